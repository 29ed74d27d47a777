// The consumer-group member of the group scenarios (docs/testing.md, "Consumer groups"):
// `e2e-client group-member --bootstrap ... --topic ... --group ... --report ...`.
//
// It subscribes to the topic in a group, processes each record by logging it, commits synchronously
// after each poll and reports every rebalance callback, one JSON object per line, flushed at once.
// Rebalances wait while a polled batch is being processed and committed (BlockRebalanceOnPoll), so a
// revoked partition's last records are committed before another member can read them. SIGTERM
// leaves the group and closes the client; SIGKILL is a crash. `t` is wall-clock microseconds.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type groupArgs struct {
	bootstrap           string
	topic               string
	group               string
	report              string
	protocol            string
	assignor            string
	instanceID          string
	sessionTimeoutMs    int
	heartbeatIntervalMs int
	rate                int
	paceFile            string
	timeoutS            int
	name                string
}

type lineWriter struct {
	mu   sync.Mutex
	file *os.File
}

func (w *lineWriter) write(kind string, fields map[string]any) {
	line := map[string]any{"kind": kind, "t": time.Now().UnixMicro()}
	for k, v := range fields {
		line[k] = v
	}
	encoded, err := json.Marshal(line)
	if err != nil {
		panic(err) // only our own maps and strings are marshalled
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.file.Write(append(encoded, '\n'))
}

func balancer(name string) (kgo.GroupBalancer, error) {
	switch name {
	case "range":
		return kgo.RangeBalancer(), nil
	case "roundrobin":
		return kgo.RoundRobinBalancer(), nil
	case "sticky":
		return kgo.StickyBalancer(), nil
	case "", "cooperative-sticky":
		return kgo.CooperativeStickyBalancer(), nil
	}
	return nil, fmt.Errorf("unknown assignor %q", name)
}

func groupMember(argv []string) int {
	var a groupArgs
	flags := flag.NewFlagSet("group-member", flag.ExitOnError)
	flags.StringVar(&a.bootstrap, "bootstrap", "", "HOST:PORT")
	flags.StringVar(&a.topic, "topic", "", "topic")
	flags.StringVar(&a.group, "group", "", "group id")
	flags.StringVar(&a.report, "report", "", "JSON-lines output file")
	flags.StringVar(&a.protocol, "protocol", "classic", "classic or consumer (KIP-848)")
	flags.StringVar(&a.assignor, "assignor", "cooperative-sticky", "range, roundrobin, sticky or cooperative-sticky")
	flags.StringVar(&a.instanceID, "instance-id", "", "group.instance.id (static membership)")
	flags.IntVar(&a.sessionTimeoutMs, "session-timeout-ms", 6000, "session timeout")
	flags.IntVar(&a.heartbeatIntervalMs, "heartbeat-interval-ms", 1000, "heartbeat interval")
	flags.IntVar(&a.rate, "rate", 0, "records per second, 0 for no limit")
	flags.StringVar(&a.paceFile, "pace-file", "", "once this file exists, --rate no longer applies")
	flags.StringVar(new(string), "log-committed", "false", "accepted for symmetry; not supported here")
	flags.IntVar(&a.timeoutS, "timeout-s", 300, "limit for the whole run")
	flags.StringVar(&a.name, "name", "member", "client id")
	flags.Parse(argv)

	file, err := os.Create(a.report)
	if err != nil {
		fmt.Fprintln(os.Stderr, "group-member:", err)
		return 2
	}
	out := &lineWriter{file: file}
	consumed, err := runGroupMember(&a, out)
	code := 0
	if err != nil {
		out.write("error", map[string]any{"message": err.Error()})
		fmt.Fprintln(os.Stderr, "group-member:", err)
		code = 1
	}
	out.write("done", map[string]any{"consumed": consumed})
	file.Close()
	return code
}

func runGroupMember(a *groupArgs, out *lineWriter) (int, error) {
	chosen, err := balancer(a.assignor)
	if err != nil {
		return 0, err
	}
	owned := map[int32]bool{}
	pending := &pendingOffsets{offsets: map[int32]int64{}}
	// commitPending commits what was processed on `partitions` (nil: all) and not committed yet. A
	// refused commit stays pending: it is retried after the next poll or in the revocation
	// callback; if the partition is lost first, its records stay uncommitted and whoever owns it
	// next reads them again.
	commitPending := func(client *kgo.Client, partitions []int32) {
		offsets := pending.take(partitions)
		if len(offsets) == 0 {
			return
		}
		commit := map[int32]kgo.EpochOffset{}
		for p, o := range offsets {
			commit[p] = kgo.EpochOffset{Epoch: -1, Offset: o}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var failure error
		client.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{a.topic: commit},
			func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
				if err != nil {
					failure = err
					return
				}
				for _, topic := range resp.Topics {
					for _, partition := range topic.Partitions {
						if err := kerr.ErrorForCode(partition.ErrorCode); err != nil && failure == nil {
							failure = fmt.Errorf("partition %d: %w", partition.Partition, err)
						}
					}
				}
			})
		if failure != nil {
			pending.restore(offsets)
			out.write("commit_failed", map[string]any{"message": failure.Error()})
			return
		}
		pairs := make([][2]int64, 0, len(offsets))
		for p, o := range offsets {
			pairs = append(pairs, [2]int64{int64(p), o})
		}
		sort.Slice(pairs, func(i, j int) bool { return pairs[i][0] < pairs[j][0] })
		out.write("committed", map[string]any{"offsets": pairs})
	}
	change := func(kind string, assigned map[string][]int32, add bool) {
		delta := append([]int32{}, assigned[a.topic]...)
		sort.Slice(delta, func(i, j int) bool { return delta[i] < delta[j] })
		for _, p := range delta {
			if add {
				owned[p] = true
			} else {
				delete(owned, p)
			}
		}
		all := make([]int32, 0, len(owned))
		for p := range owned {
			all = append(all, p)
		}
		sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
		out.write(kind, map[string]any{"partitions": delta, "owned": all})
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(a.bootstrap),
		kgo.ClientID(a.name),
		kgo.ConsumerGroup(a.group),
		kgo.ConsumeTopics(a.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.Balancers(chosen),
		kgo.SessionTimeout(time.Duration(a.sessionTimeoutMs) * time.Millisecond),
		kgo.HeartbeatInterval(time.Duration(a.heartbeatIntervalMs) * time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			change("assigned", assigned, true)
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, cl *kgo.Client, revoked map[string][]int32) {
			// The last chance to commit what was processed: the next owner starts at the commit.
			if len(revoked[a.topic]) > 0 {
				commitPending(cl, revoked[a.topic])
			}
			pending.drop(revoked[a.topic])
			change("revoked", revoked, false)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
			pending.drop(lost[a.topic])
			change("lost", lost, false)
		}),
	}
	if a.protocol == "consumer" {
		opts = append(opts, kgo.ServerSideBalancer())
	}
	if a.instanceID != "" {
		opts = append(opts, kgo.InstanceID(a.instanceID))
	}
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return 0, err
	}
	out.write("started", map[string]any{"name": a.name})
	terminated := make(chan os.Signal, 1)
	signal.Notify(terminated, syscall.SIGTERM)
	deadline := time.Now().Add(time.Duration(a.timeoutS) * time.Second)
	nextBatch := time.Now()
	consumed := 0
	var failure error
	stopping := false
	for !stopping {
		select {
		case <-terminated:
			stopping = true
			continue
		default:
		}
		if time.Now().After(deadline) {
			failure = fmt.Errorf("member ran past --timeout-s %d", a.timeoutS)
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fetches := client.PollRecords(ctx, 10)
		cancel()
		if fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				out.write("client_error", map[string]any{"message": fmt.Sprintf("%s/%d: %v", topic, partition, err)})
			}
		})
		records := fetches.Records()
		for _, r := range records {
			out.write("consumed", map[string]any{"p": r.Partition, "o": r.Offset, "i": sequence(r)})
			pending.add(r.Partition, r.Offset+1)
			consumed++
		}
		// Also when nothing came: a commit refused during a rebalance is retried once it is over.
		commitPending(client, nil)
		client.AllowRebalance()
		if a.rate > 0 && len(records) > 0 && !exists(a.paceFile) {
			nextBatch = later(nextBatch, time.Now()).Add(time.Duration(len(records)) * time.Second / time.Duration(a.rate))
			time.Sleep(time.Until(nextBatch))
		}
	}
	out.write("closing", nil)
	client.CloseAllowingRebalance()
	out.write("closed", nil)
	return consumed, failure
}

func sequence(r *kgo.Record) int64 {
	for _, h := range r.Headers {
		if h.Key == "seq" {
			if i, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil {
				return i
			}
		}
	}
	return -1
}

// pendingOffsets is what was processed and not committed yet: partition -> the offset to commit.
// The poll loop and the rebalance callbacks both use it.
type pendingOffsets struct {
	mu      sync.Mutex
	offsets map[int32]int64
}

func (p *pendingOffsets) add(partition int32, offset int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.offsets[partition] = offset
}

// take removes and returns the pending offsets of `partitions` (nil: all).
func (p *pendingOffsets) take(partitions []int32) map[int32]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	taken := map[int32]int64{}
	for partition, offset := range p.offsets {
		if partitions == nil || slices.Contains(partitions, partition) {
			taken[partition] = offset
			delete(p.offsets, partition)
		}
	}
	return taken
}

// restore puts back offsets whose commit failed, unless newer ones arrived meanwhile.
func (p *pendingOffsets) restore(offsets map[int32]int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for partition, offset := range offsets {
		if _, newer := p.offsets[partition]; !newer {
			p.offsets[partition] = offset
		}
	}
}

func (p *pendingOffsets) drop(partitions []int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, partition := range partitions {
		delete(p.offsets, partition)
	}
}

func exists(path string) bool {
	if path == "" {
		return false
	}
	_, err := os.Stat(path)
	return err == nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
