import math, sys
def sim(stagger, tick, S=15.0, rate=15.5, P=12, T=1800, seed_off=0.37):
    # entries per partition: list of timestamps (window entries)
    parts=[[] for _ in range(P)]
    compacted=[0]*P
    dt=1.0/rate
    t=0.0; next_tick=tick*seed_off; samples=[]; next_sample=0.0
    while t<T:
        # window
        for p in range(P): parts[p].append(t)
        t+=dt
        while next_tick<=t:
            # run up to 4 jobs of 3 partitions: just merge all settled runs (capacity ok)
            for p in range(P):
                e=parts[p]
                ph = (p*S/P) if stagger else 0.0
                # find first run: entries from start while span<=S and same bucket
                while len(e)>=2:
                    start=e[0]; i=1
                    bend = (math.floor((start+ph)/S)+1)*S-ph
                    while i<len(e) and e[i]-start<=S and (not stagger or e[i]<bend): i+=1
                    if i<len(e):  # settled: an entry follows that cannot join
                        del e[:i]; compacted[p]+=1
                    else: break
            next_tick+=tick
        while next_sample<=t:
            samples.append((next_sample, sum(len(e) for e in parts)))
            next_sample+=1.0
    last=[(s,v) for s,v in samples if s>=900]
    means=[]
    for k in range(7):
        vs=[v for s,v in last if 900+120*k<=s<900+120*(k+1)]
        means.append(sum(vs)/len(vs))
    return min(v for _,v in last), max(v for _,v in last), min(means), max(means), max(means)/min(means)
for stagger in (False,True):
    for tick in (10.25, 5.1, 2.05, 1.0):
        r=sim(stagger,tick)
        print("stagger" if stagger else "lockstep", tick, "samples %d-%d means %.0f-%.0f ratio %.3f"%r)
