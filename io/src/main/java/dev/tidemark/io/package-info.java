/**
 * Block stores, aligned direct buffers and zero-copy transfer, the NBD server and client, the qcow2
 * writer for backup targets, and QMP framing.
 */
package dev.tidemark.io;
