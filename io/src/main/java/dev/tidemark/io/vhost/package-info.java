/**
 * A vhost-user-blk back end ({@link dev.tidemark.io.vhost.VhostUserBlkServer}): QEMU's vhost-user protocol with
 * memory and eventfds passed over a Unix socket, split virtqueues in shared guest memory, and virtio-blk requests
 * served into an {@link dev.tidemark.io.nbd.NbdExport}. See {@code docs/vm.md}.
 */
package dev.tidemark.io.vhost;
