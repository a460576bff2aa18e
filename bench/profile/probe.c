/*
 * Scheduling probe: sleeps 1 ms at a time for N seconds and reports how late it woke (worst, and how often
 * by more than 1, 10 and 50 ms). It does no work, so its lateness is the machine's own scheduling delay: on
 * a virtual machine whose host stops it when the guest uses every vCPU, the floor under any latency.
 *   gcc -O2 -o probe bench/profile/probe.c && ./probe 10 & (your load)
 * Single-threaded; see docs/benchmarks.md "Write stalls".
 */
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
static long ns(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1000000000L+t.tv_nsec;}
int main(int c,char**v){int secs=atoi(v[1]);long end=ns()+secs*1000000000L;long max=0;long over1=0,over10=0,over50=0,n=0;
struct timespec d={0,1000000};
while(ns()<end){long a=ns();nanosleep(&d,0);long late=ns()-a-1000000;n++;if(late>max)max=late;if(late>1000000)over1++;if(late>10000000)over10++;if(late>50000000)over50++;}
printf("n=%ld max_late=%.2fms >1ms=%ld >10ms=%ld >50ms=%ld\n",n,max/1e6,over1,over10,over50);}
