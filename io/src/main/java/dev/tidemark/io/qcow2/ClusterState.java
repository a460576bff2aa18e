package dev.tidemark.io.qcow2;

/** Immutable: what one guest cluster is in one qcow2 image, its backing chain aside. */
public enum ClusterState
{
    /** Holds data in this image's file. */
    DATA,
    /** Reads as zeroes whatever the backing chain holds (L2 bit 0, version 3). */
    ZERO,
    /** Not in this image: reads fall through to the backing file, or zeroes without one. */
    UNALLOCATED
}
