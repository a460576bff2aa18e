#!/usr/bin/env python3
"""Drive a storage daemon over QMP the way one drives qemu-storage-daemon (standard library only).

Usage:
  qsd_flow.py --workdir DIR [--bitmaps-only] [--restore-cmd CMD] --daemon CMD...

DAEMON is the command prefix that accepts qemu-storage-daemon's options (--blockdev, --nbd-server,
--export, --chardev, --monitor): `qemu-storage-daemon`, or `java ... TidemarkMain serve`.

Phases:
  bitmaps   add/clear/enable/disable/merge/remove bitmaps while qemu-io writes through NBD; record
            x-debug-block-dirty-bitmap-sha256 and count after each step (compared across daemons).
  backup    (unless --bitmaps-only) full backup to qcow2 in a transaction with a new bitmap; more
            writes; one transaction rotating bitmaps, starting an incremental backup into a qcow2 made
            with `qemu-img create -b full.qcow2`; then a sync=none fleecing backup into a temp qcow2
            backed by the disk, more writes, the fleecing node exported and read: `qemu-img compare`
            checks the chain against the export (the disk at the cut) and that the live disk moved on;
            restore with `tidemark backup restore` when --restore-cmd is given.
  abuse     malformed JSON, an oversized message, a flood of pipelined commands: errors, then alive.
  quit      quit; SHUTDOWN; the process exits.
Prints one JSON object with the results; exits 1 when a check failed.
"""
import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time


class QmpError(Exception):
    def __init__(self, reply):
        super().__init__("%s: %s" % (reply["error"]["class"], reply["error"]["desc"]))
        self.error_class = reply["error"]["class"]
        self.desc = reply["error"]["desc"]


class Qmp:
    def __init__(self, path, timeout=60, proc=None):
        deadline = time.time() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError("daemon exited with code %s before QMP was up" % proc.returncode)
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.events = []
        self.next_id = 0
        self.greeting = self._read()
        self.cmd("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("QMP connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def send_raw(self, data):
        self.sock.sendall(data)

    def reply(self, want_id=None):
        while True:
            msg = self._read()
            if "event" in msg:
                self.events.append(msg)
                continue
            if want_id is None or msg.get("id") == want_id:
                return msg

    def cmd(self, _command, **args):
        self.next_id += 1
        msg = {"execute": _command, "id": self.next_id}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        reply = self.reply(self.next_id)
        if "error" in reply:
            raise QmpError(reply)
        return reply["return"]

    def event(self, name, timeout=60, **match):
        deadline = time.time() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] == name and all(ev.get("data", {}).get(k) == v for k, v in match.items()):
                    return self.events.pop(i)
            if time.time() > deadline:
                raise TimeoutError("no %s %s; have %s" % (name, match, [e["event"] for e in self.events]))
            self.sock.settimeout(max(0.1, deadline - time.time()))
            try:
                msg = self._read()
            except socket.timeout:
                continue
            if "event" in msg:
                self.events.append(msg)


def run(cmd, **kw):
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, **kw)
    return res.returncode, res.stdout.decode(errors="replace")


def qemu_io(uri, commands):
    args = ["qemu-io", "-f", "raw"]
    for c in commands:
        args += ["-c", c]
    rc, out = run(args + [uri])
    if rc != 0 or "error" in out.lower() or "failed" in out.lower():
        raise RuntimeError("qemu-io failed: %s" % out)


def writes(rng, count, size, pattern):
    out = []
    for _ in range(count):
        length = rng.choice([512, 4096, 65536, 131072, 1000])
        offset = rng.randrange(0, size - length)
        if rng.random() < 0.7:
            offset -= offset % 512
        out.append("write -P %d %d %d" % (pattern, offset, length))
    return out


def bitmap_state(qmp, node, name):
    sha = qmp.cmd("x-debug-block-dirty-bitmap-sha256", node=node, name=name)["sha256"]
    count = None
    for n in qmp.cmd("query-named-block-nodes"):
        if n["node-name"] == node:
            for b in n.get("dirty-bitmaps", []):
                if b["name"] == name:
                    count = b["count"]
    return {"bitmap": name, "sha256": sha, "count": count}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--bitmaps-only", action="store_true")
    ap.add_argument("--restore-cmd", help="command prefix of `tidemark backup restore`")
    ap.add_argument("--size", type=int, default=64 << 20)
    ap.add_argument("--daemon", nargs=argparse.REMAINDER, required=True)
    opts = ap.parse_args()
    wd = os.path.abspath(opts.workdir)
    os.makedirs(wd, exist_ok=True)
    size = opts.size
    disk = os.path.join(wd, "disk.raw")
    with open(disk, "wb") as f:
        f.truncate(size)
    qmp_sock = os.path.join(wd, "qmp.sock")
    nbd_sock = os.path.join(wd, "nbd.sock")
    uri = "nbd+unix:///d0?socket=" + nbd_sock
    log = open(os.path.join(wd, "daemon.log"), "wb")
    proc = subprocess.Popen(opts.daemon + [
        "--blockdev", "driver=file,node-name=f0,filename=" + disk,
        "--blockdev", "driver=raw,node-name=d0,file=f0",
        "--nbd-server", "addr.type=unix,addr.path=" + nbd_sock,
        "--export", "type=nbd,id=e0,node-name=d0,name=d0,writable=on",
        "--chardev", "socket,id=m0,path=%s,server=on,wait=off" % qmp_sock,
        "--monitor", "chardev=m0"], stdout=log, stderr=subprocess.STDOUT)
    result = {"checks": {}, "bitmaps": [], "errors": []}
    checks = result["checks"]
    try:
        qmp = Qmp(qmp_sock, proc=proc)
        result["version"] = qmp.greeting["QMP"]["version"]
        rng = random.Random(1128)

        # ---- bitmaps phase -------------------------------------------------------------------------
        qmp.cmd("block-dirty-bitmap-add", node="d0", name="b0", granularity=65536)
        qemu_io(uri, writes(rng, 40, size, 0x11))
        result["bitmaps"].append(bitmap_state(qmp, "d0", "b0"))
        qmp.cmd("block-dirty-bitmap-add", node="d0", name="b4k", granularity=4096)
        qmp.cmd("block-dirty-bitmap-add", node="d0", name="off", disabled=True)
        qemu_io(uri, writes(rng, 30, size, 0x22))
        for name in ("b0", "b4k", "off"):
            result["bitmaps"].append(bitmap_state(qmp, "d0", name))
        qmp.cmd("transaction", actions=[
            {"type": "block-dirty-bitmap-disable", "data": {"node": "d0", "name": "b0"}},
            {"type": "block-dirty-bitmap-enable", "data": {"node": "d0", "name": "off"}},
            {"type": "block-dirty-bitmap-add", "data": {"node": "d0", "name": "b1"}}])
        qemu_io(uri, writes(rng, 25, size, 0x33))
        qmp.cmd("block-dirty-bitmap-merge", node="d0", target="off", bitmaps=["b0", {"node": "d0", "name": "b1"}])
        for name in ("b0", "b1", "off"):
            result["bitmaps"].append(bitmap_state(qmp, "d0", name))
        try:
            qmp.cmd("transaction", actions=[
                {"type": "block-dirty-bitmap-clear", "data": {"node": "d0", "name": "b1"}},
                {"type": "abort", "data": {}}])
            result["errors"].append("abort transaction succeeded")
        except QmpError as e:
            result["abort_error"] = e.desc
        result["bitmaps"].append(bitmap_state(qmp, "d0", "b1"))
        qmp.cmd("block-dirty-bitmap-clear", node="d0", name="b4k")
        qmp.cmd("block-dirty-bitmap-remove", node="d0", name="off")
        result["bitmaps"].append(bitmap_state(qmp, "d0", "b4k"))
        for bad in ({"node": "d0", "name": "nope"}, {"node": "nonode", "name": "b0"}):
            try:
                qmp.cmd("block-dirty-bitmap-clear", **bad)
            except QmpError as e:
                result.setdefault("bitmap_errors", []).append(e.desc)
        try:
            qmp.cmd("block-dirty-bitmap-add", node="d0", name="b0")
        except QmpError as e:
            result.setdefault("bitmap_errors", []).append(e.desc)
        for name in ("b0", "b1", "b4k"):
            qmp.cmd("block-dirty-bitmap-remove", node="d0", name=name)

        if not opts.bitmaps_only:
            backup_phase(qmp, opts, wd, size, uri, nbd_sock, rng, result)
            abuse_phase(qmp, qmp_sock, result)

        qmp.cmd("quit")
        try:
            while True:
                msg = qmp._read()
                if msg.get("event") == "SHUTDOWN":
                    result["shutdown_event"] = msg["data"]
        except (EOFError, OSError):
            pass
        rc = proc.wait(timeout=60)
        checks["daemon_exit_code_0"] = rc == 0
    except Exception as e:  # report, then fail
        import traceback
        result["errors"].append("%s: %s" % (type(e).__name__, e))
        result["traceback"] = traceback.format_exc()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
    ok = not result["errors"] and all(checks.values())
    result["ok"] = ok
    print(json.dumps(result, indent=1, sort_keys=True))
    sys.exit(0 if ok else 1)


def backup_phase(qmp, opts, wd, size, uri, nbd_sock, rng, result):
    checks = result["checks"]
    full = os.path.join(wd, "full.qcow2")
    inc = os.path.join(wd, "inc1.qcow2")
    temp = os.path.join(wd, "fleece.qcow2")
    qemu_io(uri, writes(rng, 60, size, 0x44))
    run(["qemu-img", "create", "-f", "qcow2", full, str(size)])
    qmp.cmd("blockdev-add", driver="qcow2", **{"node-name": "tfull"},
            file={"driver": "file", "filename": full})
    qmp.cmd("transaction", actions=[
        {"type": "block-dirty-bitmap-add", "data": {"node": "d0", "name": "inc0", "persistent": False}},
        {"type": "block-dirty-bitmap-add", "data": {"node": "d0", "name": "all"}},
        {"type": "blockdev-backup", "data": {"device": "d0", "target": "tfull", "sync": "full", "job-id": "jfull"}}])
    done = qmp.event("BLOCK_JOB_COMPLETED", device="jfull")
    checks["full_backup_completed"] = "error" not in done["data"] and done["data"]["offset"] == size
    qmp.event("JOB_STATUS_CHANGE", id="jfull", status="null")
    qmp.cmd("blockdev-del", **{"node-name": "tfull"})

    qemu_io(uri, writes(rng, 50, size, 0x55))
    run(["qemu-img", "create", "-f", "qcow2", "-b", full, "-F", "qcow2", inc, str(size)])
    run(["qemu-img", "create", "-f", "qcow2", temp, str(size)])
    qmp.cmd("blockdev-add", driver="qcow2", **{"node-name": "tinc"}, file={"driver": "file", "filename": inc})
    qmp.cmd("blockdev-add", driver="qcow2", **{"node-name": "fl"}, file={"driver": "file", "filename": temp},
            backing="d0")
    dirty = bitmap_state(qmp, "d0", "inc0")["count"]
    qmp.cmd("transaction", actions=[
        {"type": "block-dirty-bitmap-add", "data": {"node": "d0", "name": "inc1"}},
        {"type": "blockdev-backup", "data": {"device": "d0", "target": "tinc", "sync": "incremental",
                                             "bitmap": "inc0", "job-id": "jinc"}}])
    done = qmp.event("BLOCK_JOB_COMPLETED", device="jinc")
    checks["incremental_completed"] = "error" not in done["data"]
    checks["incremental_copied_dirty"] = done["data"]["offset"] == dirty
    qmp.event("JOB_STATUS_CHANGE", id="jinc", status="null")
    # Pull side: a point-in-time view (QEMU 7.2 fleecing: sync=none into a qcow2 backed by the disk).
    # At the same cut, 'all' (every write since the full backup) stops: it is exported next to the view.
    all_count = bitmap_state(qmp, "d0", "all")["count"]
    checks["bitmap_since_full_equals_incremental"] = all_count == dirty
    qmp.cmd("transaction", actions=[
        {"type": "block-dirty-bitmap-disable", "data": {"node": "d0", "name": "all"}},
        {"type": "blockdev-backup", "data": {"device": "d0", "target": "fl", "sync": "none", "job-id": "jfl"}}])
    # The guest keeps writing after the fleecing cut; the export must not see it.
    qemu_io(uri, writes(rng, 20, size, 0x66))
    qmp.cmd("blockdev-del", **{"node-name": "tinc"})
    qmp.cmd("block-export-add", type="nbd", id="fe", **{"node-name": "fl"}, name="fleece", writable=False,
            bitmaps=[{"node": "d0", "name": "all"}])
    exports = qmp.cmd("query-block-exports")
    checks["fleece_export_listed"] = any(e["id"] == "fe" and e["node-name"] == "fl" for e in exports)
    fleece_uri = "nbd+unix:///fleece?socket=" + nbd_sock
    rc, out = run(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", inc, fleece_uri])
    result["compare_chain_vs_fleece"] = out.strip()
    checks["chain_equals_disk_at_cut"] = rc == 0
    # The exported bitmap as a backup tool sees it (qemu's x-dirty-bitmap: dirty reads as "data": false).
    rc, out = run(["qemu-img", "map", "--output=json", "--image-opts",
                   "driver=nbd,export=fleece,server.type=unix,server.path=%s,"
                   "x-dirty-bitmap=qemu:dirty-bitmap:all" % nbd_sock])
    dirty_bytes = sum(e["length"] for e in json.loads(out) if not e["data"]) if rc == 0 else -1
    result["exported_bitmap_dirty_bytes"] = dirty_bytes
    checks["exported_bitmap_matches_count"] = dirty_bytes == all_count and all_count > 0
    rc, out = run(["qemu-img", "compare", "-f", "raw", "-F", "raw", uri, fleece_uri])
    checks["live_disk_moved_on_after_cut"] = rc == 1
    if opts.restore_cmd:
        restored = os.path.join(wd, "restored.raw")
        rc, out = run(opts.restore_cmd.split() + [full, inc, "--to", restored])
        result["restore_output"] = out.strip()
        rc2, out2 = run(["qemu-img", "compare", "-f", "raw", "-F", "raw", restored, fleece_uri])
        checks["restored_equals_disk_at_cut"] = rc == 0 and rc2 == 0
    qmp.cmd("block-export-del", id="fe")
    qmp.event("BLOCK_EXPORT_DELETED", id="fe")
    qmp.cmd("job-cancel", id="jfl")
    qmp.event("BLOCK_JOB_CANCELLED", device="jfl")
    qmp.event("JOB_STATUS_CHANGE", id="jfl", status="null")
    qmp.cmd("blockdev-del", **{"node-name": "fl"})
    checks["nodes_after"] = sorted(n["node-name"] for n in qmp.cmd("query-named-block-nodes")) == ["d0", "f0"]
    result["bitmaps_after_backup"] = [bitmap_state(qmp, "d0", name) for name in ("inc0", "inc1", "all")]


def abuse_phase(qmp, qmp_sock, result):
    checks = result["checks"]
    qmp.send_raw(b'{"execute": "query-version", "id": 1,,}\n')
    r = qmp.reply()
    checks["malformed_json_error"] = r.get("error", {}).get("desc", "").startswith("JSON parse error")
    qmp.send_raw(b'{"execute": "query-version", "arguments": {"pad": "' + b"x" * (2 << 20) + b'"}}\n')
    r = qmp.reply()
    checks["oversized_message_error"] = "too large" in r.get("error", {}).get("desc", "")
    n = 2000
    qmp.send_raw(b"".join(json.dumps({"execute": "query-block-jobs", "id": "f%d" % i}).encode() for i in range(n)))
    got = 0
    for i in range(n):
        r = qmp.reply()
        if r.get("id") == "f%d" % i and "return" in r:
            got += 1
    checks["flood_all_answered_in_order"] = got == n
    other = Qmp(qmp_sock)
    checks["alive_after_abuse"] = "qemu" in other.cmd("query-version")
    other.sock.close()


if __name__ == "__main__":
    main()
