/**
 * Checkpoints: a per-disk catalogue of named points in the write order and one epoch map per disk that answers
 * "what changed since checkpoint X" for every X ({@link dev.tidemark.engine.checkpoint.DiskCheckpoints},
 * {@link dev.tidemark.engine.checkpoint.CheckpointActions}); docs/checkpoints.md.
 */
package dev.tidemark.engine.checkpoint;
