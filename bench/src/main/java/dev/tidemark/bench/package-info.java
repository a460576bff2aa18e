/** JMH benchmarks and the end-to-end load harness. */
package dev.tidemark.bench;
