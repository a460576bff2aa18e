# Off-CPU intervals of one process's threads from a perf recording of scheduler switches, longest first,
# with the kernel stack at the switch-out; idle waits (futex, nanosleep, socket reads) are left out.
#   perf record -e sched:sched_switch -g -p PID -o sched.data -- sleep 30
#   python3 bench/profile/offcpu.py sched.data THREAD-NAME-PART [COUNT]
import subprocess,re,sys,collections
# parse perf script output: off-CPU intervals per thread with the stack at switch-out
out=subprocess.run(['perf','script','-i',sys.argv[1],'-F','comm,tid,time,event,trace,ip,sym'],capture_output=True,text=True).stdout
events=[]
cur=None
for line in out.split('\n'):
    m=re.match(r'\s*(\S.*?)\s+(\d+)\s+([\d.]+):\s+sched:sched_switch:\s+(.*)',line)
    if m:
        cur={'comm':m.group(1),'tid':int(m.group(2)),'t':float(m.group(3)),'trace':m.group(4),'stack':[]}
        events.append(cur); continue
    if cur and line.strip():
        p=line.strip().split(None,1)
        if len(p)==2: cur['stack'].append(p[1])
out_at={}
res=[]
want=sys.argv[2]
for e in events:
    tr=e['trace']
    pm=re.search(r'prev_comm=(.*?) prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)',tr)
    if not pm: continue
    prev_comm,prev_pid,state,next_comm,next_pid=pm.group(1),int(pm.group(2)),pm.group(3),pm.group(4),int(pm.group(5))
    if want in prev_comm:
        out_at[prev_pid]=(e['t'],state,e['stack'][:12],prev_comm)
    if want in next_comm and next_pid in out_at:
        t0,state,stack,c=out_at.pop(next_pid)
        res.append((e['t']-t0,t0,state,c,stack))
res.sort(key=lambda r:-r[0])
shown=0
for d,t0,state,c,stack in res:
    if shown>=(int(sys.argv[3]) if len(sys.argv)>3 else 8): break
    if state.startswith('S') and any('futex' in s or 'do_nanosleep' in s or 'ep_poll' in s or 'unix_stream' in s or 'sock_' in s for s in stack): continue
    shown+=1
    print('%.2f ms off-CPU at %.3f state %s %s'%(d*1000,t0,state,c)); print('   '+'\n   '.join(stack[:10]))
