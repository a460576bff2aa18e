# Who held the CPU while one thread was runnable but not running: from a perf recording of scheduler switches
# filtered on that thread, the time it waited (switched out in state R or R+), filed under the thread that ran
# first in its place, and its longest waits. Used for docs/benchmarks.md, "Stop 16: who takes the ring's CPU".
#   perf record -e sched:sched_switch -a -o ring.data \
#     --filter 'prev_comm == "tidemark-f0-rin" || next_comm == "tidemark-f0-rin"' -- sleep 60
#   python3 bench/profile/cpu-waits.py ring.data tidemark-f0-rin [COUNT]
import collections
import re
import subprocess
import sys

if len(sys.argv) < 3:
    sys.exit("usage: cpu-waits.py PERF-DATA THREAD-COMM [COUNT]")
data, comm = sys.argv[1], sys.argv[2][:15]
count = int(sys.argv[3]) if len(sys.argv) > 3 else 10
script = subprocess.run(["perf", "script", "-i", data, "-F", "time,trace"], capture_output=True, text=True,
                        check=True).stdout
switch = re.compile(r"\s*([\d.]+):\s+prev_comm=(.+?) prev_pid=\d+ prev_prio=\d+ prev_state=(\S+) ==> "
                    r"next_comm=(.+?) next_pid=\d+")
total = collections.Counter()
waits = collections.Counter()
over_1ms = collections.Counter()
longest = []
out_at = None
for line in script.splitlines():
    m = switch.match(line)
    if not m:
        continue
    t, prev, state, nxt = float(m.group(1)), m.group(2), m.group(3), m.group(4)
    if prev == comm:
        # Only a preempted thread (R, R+) waited for a CPU; S and D are its own waits.
        out_at = (t, nxt) if state.startswith("R") else None
    elif nxt == comm and out_at is not None:
        waited = t - out_at[0]
        taker = out_at[1]
        total[taker] += waited
        waits[taker] += 1
        over_1ms[taker] += waited > 0.001
        longest.append((waited, out_at[0], taker))
        out_at = None
print(f"{'ran instead':<18} {'total ms':>9} {'waits':>7} {'> 1 ms':>7}")
for taker, seconds in total.most_common(count):
    print(f"{taker:<18} {seconds * 1e3:9.1f} {waits[taker]:7d} {over_1ms[taker]:7d}")
print("longest waits:")
for waited, at, taker in sorted(longest, reverse=True)[:count]:
    print(f"  {waited * 1e3:7.3f} ms at {at:.3f} s behind {taker}")
