/**
 * NBD exports of tracked disks and fleecing views with QEMU's export rules: {@link
 * dev.tidemark.engine.export.ExportManager} owns the NBD server's lifecycle and the exports, {@link
 * dev.tidemark.engine.export.TrackedDiskExport} serves a disk through its write ring.
 */
package dev.tidemark.engine.export;
