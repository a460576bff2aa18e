/**
 * The NBD server ({@link dev.tidemark.io.nbd.NbdServer} serving {@link dev.tidemark.io.nbd.NbdExport}s with
 * asynchronous completion and metadata contexts) and client ({@link dev.tidemark.io.nbd.NbdClient}, a
 * {@link dev.tidemark.io.BlockStore} on a remote export). See {@code docs/nbd.md}.
 */
package dev.tidemark.io.nbd;
