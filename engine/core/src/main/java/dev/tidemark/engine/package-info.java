/**
 * The tracked disk and its write ring, the bitmap registry and transactions, the metadata journal,
 * backup jobs and copy-before-write, and the wiring of exports.
 */
package dev.tidemark.engine;
