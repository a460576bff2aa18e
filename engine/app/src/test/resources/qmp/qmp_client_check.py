#!/usr/bin/env python3
"""Drive a QMP server the way a qemu-storage-daemon management script does (standard library only).

Usage: qmp_client_check.py SOCKET [--quit]
Exits 0 when every check passes; prints one line per check. Works against qemu-storage-daemon and
Tidemark; Tidemark-only checks run when the server lists the command they need.
"""
import json
import socket
import sys


class QMPError(Exception):
    def __init__(self, reply):
        super().__init__("%s: %s" % (reply["error"]["class"], reply["error"]["desc"]))
        self.error_class = reply["error"]["class"]
        self.desc = reply["error"]["desc"]


class QMP:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(path)
        self.rfile = self.sock.makefile("rb")
        self.events = []
        self.next_id = 0
        self.greeting = self.read()

    def read(self):
        line = self.rfile.readline()
        if not line:
            raise EOFError("server closed the connection")
        assert line.endswith(b"\r\n"), "message not CRLF-terminated: %r" % line
        line.decode("ascii")  # QMP output must be pure ASCII
        return json.loads(line)

    def send(self, message):
        self.sock.sendall(json.dumps(message).encode("utf-8"))

    def command_reply(self, name, arguments=None, msg_id=None):
        """Send one command and return its reply; events that arrive first are collected."""
        if msg_id is None:
            self.next_id += 1
            msg_id = "py-%d" % self.next_id
        message = {"execute": name, "id": msg_id}
        if arguments is not None:
            message["arguments"] = arguments
        self.send(message)
        while True:
            reply = self.read()
            if "event" in reply:
                self.events.append(reply)
                continue
            assert reply.get("id") == msg_id, "reply %r does not echo id %r" % (reply, msg_id)
            return reply

    def cmd(self, name, **arguments):
        reply = self.command_reply(name, arguments or None)
        if "error" in reply:
            raise QMPError(reply)
        return reply["return"]


def check(label, condition):
    if not condition:
        print("FAIL " + label)
        sys.exit(1)
    print("ok   " + label)


def main():
    qmp = QMP(sys.argv[1])
    version = qmp.greeting["QMP"]["version"]
    check("greeting has a version triple",
          all(isinstance(version["qemu"][k], int) for k in ("major", "minor", "micro")))
    check("greeting lists capabilities", isinstance(qmp.greeting["QMP"]["capabilities"], list))

    reply = qmp.command_reply("query-version")
    check("commands refused before negotiation",
          reply["error"]["class"] == "CommandNotFound"
          and reply["error"]["desc"] == "Expecting capabilities negotiation with 'qmp_capabilities'")

    check("negotiation returns {}", qmp.cmd("qmp_capabilities") == {})
    check("query-version works", isinstance(qmp.cmd("query-version")["qemu"]["major"], int))
    commands = [c["name"] for c in qmp.cmd("query-commands")]
    check("query-commands lists the built-ins",
          all(n in commands for n in ("qmp_capabilities", "query-version", "query-commands", "quit")))

    try:
        qmp.cmd("no-such-command")
        check("unknown command fails", False)
    except QMPError as e:
        check("unknown command is CommandNotFound",
              e.error_class == "CommandNotFound" and e.desc == "The command no-such-command has not been found")
    try:
        qmp.cmd("query-version", bogus=1)
        check("unexpected argument fails", False)
    except QMPError as e:
        check("unexpected argument text", e.desc == "Parameter 'bogus' is unexpected")

    reply = qmp.command_reply("query-version", msg_id={"tag": [1, 2], "n": None})
    check("structured id echoed", reply["id"] == {"tag": [1, 2], "n": None})
    reply = qmp.command_reply("query-version", msg_id="\u00e9\u20ac\U0001F600")
    check("non-ASCII id echoed through ASCII escapes", reply["id"] == "\u00e9\u20ac\U0001F600")

    batch = "".join(json.dumps({"execute": "query-version", "id": i}) for i in range(200))
    qmp.sock.sendall(batch.encode())
    ids = []
    while len(ids) < 200:
        message = qmp.read()
        if "event" not in message:
            ids.append(message["id"])
    check("200 pipelined commands answered in order", ids == list(range(200)))

    qmp.sock.sendall(b'{"execute": "query-version" "id": 1}')
    reply = qmp.read()
    check("bad JSON is a GenericError without id",
          reply["error"]["class"] == "GenericError" and reply["error"]["desc"].startswith("JSON parse error, ")
          and "id" not in reply)
    check("connection survives bad JSON", "qemu" in qmp.cmd("query-version"))

    if "__dev.tidemark_x-raise-event" in commands:
        qmp.events.clear()
        result = qmp.cmd("__dev.tidemark_x-raise-event", event="JOB_STATUS_CHANGE",
                         data={"id": "j0", "status": "created"}, count=2)
        check("events arrive before the command's return",
              result == {"raised": 2} and [e["event"] for e in qmp.events] == ["JOB_STATUS_CHANGE"] * 2)
        stamp = qmp.events[0]["timestamp"]
        check("events carry timestamps", stamp["seconds"] > 1_500_000_000 and 0 <= stamp["microseconds"] < 1_000_000)

    if len(sys.argv) > 2 and sys.argv[2] == "--quit":
        check("quit returns {}", qmp.cmd("quit") == {})
        try:
            while True:
                qmp.read()
        except (EOFError, ConnectionResetError):
            check("server closes the connection after quit", True)
    print("ALL CHECKS PASSED")


if __name__ == "__main__":
    main()
