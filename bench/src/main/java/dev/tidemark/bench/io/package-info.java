/** Benchmarks of the io module: copy paths and block stores. */
package dev.tidemark.bench.io;
