// Command e2e-client is franz-go in the end-to-end matrix (see docs/testing.md).
//
// It creates the topic (kadm), produces the run's records with acks=all and the chosen codec, then
// reads every partition from the beginning up to the high watermark taken after producing, with no
// consumer group (direct partition consumption), and writes the JSON-lines report.
//
// `e2e-client group-member ...` is instead a consumer-group member for the group scenarios
// (group.go).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

type args struct {
	bootstrap       string
	topic           string
	records         int
	codec           string
	mode            string
	partitions      int
	seed            uint64
	timestampBaseMs int64
	report          string
	timeoutS        int
	// The client.id of every client of the run (a cluster's agents read a zone from it:
	// `sluice_az=ZONE`), and whether the producer is idempotent.
	clientID   string
	idempotent bool
	// Records per second the producer sends (0: as fast as it can), so a run can outlast events.
	rate int
	// Security of the tests of secured listeners: a CA file means TLS, a mechanism means SASL.
	tlsCA         string
	saslMechanism string
	saslUser      string
	saslPassword  string
	// The options every client of the run gets (from the four above).
	security []kgo.Opt
}

func parseArgs() args {
	var a args
	flag.StringVar(&a.bootstrap, "bootstrap", "", "HOST:PORT[,HOST:PORT...]")
	flag.StringVar(&a.topic, "topic", "", "topic")
	flag.IntVar(&a.records, "records", 0, "records to produce")
	flag.StringVar(&a.codec, "codec", "none", "none, gzip, snappy, lz4 or zstd")
	flag.StringVar(&a.mode, "mode", "roundtrip", "produce, consume or roundtrip")
	flag.IntVar(&a.partitions, "partitions", 8, "partitions")
	flag.Uint64Var(&a.seed, "seed", 1, "generator seed")
	flag.Int64Var(&a.timestampBaseMs, "timestamp-base-ms", 0, "timestamp of record 0")
	flag.StringVar(&a.report, "report", "", "JSON-lines output file")
	flag.IntVar(&a.timeoutS, "timeout-s", 120, "limit for each phase")
	flag.StringVar(&a.clientID, "client-id", "", "client.id (empty: franz-go's default)")
	flag.BoolVar(&a.idempotent, "idempotent", false, "idempotent producer (InitProducerId)")
	flag.IntVar(&a.rate, "rate", 0, "records per second to produce (0: no limit)")
	flag.StringVar(&a.tlsCA, "tls-ca", "", "PEM CA file: connect with TLS, trusting it")
	flag.StringVar(&a.saslMechanism, "sasl-mechanism", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	flag.StringVar(&a.saslUser, "sasl-user", "", "SASL user")
	flag.StringVar(&a.saslPassword, "sasl-password", "", "SASL password")
	flag.Parse()
	return a
}

// securityOpts turns the TLS and SASL flags into client options.
func securityOpts(a *args) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if a.tlsCA != "" {
		pem, err := os.ReadFile(a.tlsCA)
		if err != nil {
			return nil, err
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", a.tlsCA)
		}
		// The server name is each broker's host, as franz-go fills it in.
		opts = append(opts, kgo.DialTLSConfig(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}))
	}
	switch a.saslMechanism {
	case "":
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: a.saslUser, Pass: a.saslPassword}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: a.saslUser, Pass: a.saslPassword}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: a.saslUser, Pass: a.saslPassword}.AsSha512Mechanism()))
	default:
		return nil, fmt.Errorf("unknown SASL mechanism %q", a.saslMechanism)
	}
	return opts, nil
}

// newClient is kgo.NewClient with the run's security options and client id first.
func newClient(a *args, opts ...kgo.Opt) (*kgo.Client, error) {
	common := append([]kgo.Opt{}, a.security...)
	if a.clientID != "" {
		common = append(common, kgo.ClientID(a.clientID))
	}
	// E2E_KGO_LOG=debug|info|warn writes franz-go's own log to stderr (the run's log file).
	switch os.Getenv("E2E_KGO_LOG") {
	case "debug":
		common = append(common, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelDebug, nil)))
	case "info":
		common = append(common, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelInfo, nil)))
	case "warn":
		common = append(common, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelWarn, nil)))
	}
	return kgo.NewClient(append(common, opts...)...)
}

func splitmix64(x uint64) uint64 {
	z := x + 0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// record builds record `index` of the run: docs/testing.md, "The record generator".
func record(a *args, index int) *kgo.Record {
	i := uint64(index)
	h := splitmix64(a.seed*0x100000001B3 + i)
	r := &kgo.Record{Topic: a.topic, Partition: int32(index % a.partitions)}
	if index%10 != 9 {
		r.Key = []byte("key-" + strconv.Itoa(index))
	}
	length := 1 + int(h%300)
	r.Value = make([]byte, length)
	for j := 0; j < length; j++ {
		b := (h >> ((uint(j) % 8) * 8)) & 0xFF
		r.Value[j] = byte(97 + (b+uint64(j))%26)
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: "seq", Value: []byte(strconv.Itoa(index))})
	if index%3 == 0 {
		hash := make([]byte, 8)
		binary.BigEndian.PutUint64(hash, h)
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: "hash", Value: hash})
	}
	if index%5 == 0 {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: "empty", Value: []byte{}})
	}
	r.Timestamp = time.UnixMilli(a.timestampBaseMs + int64(index))
	return r
}

type report struct {
	mu      sync.Mutex
	file    *os.File
	out     *bufio.Writer
	started time.Time
}

func (r *report) write(v any) {
	line, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own maps and strings are marshalled
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out.Write(line)
	r.out.WriteByte('\n')
}

func (r *report) ack(index int, partition int32, offset int64) {
	r.write(map[string]any{"kind": "ack", "i": index, "p": partition, "o": offset})
}

func (r *report) rec(rec *kgo.Record) {
	var key any
	if rec.Key != nil {
		key = hex.EncodeToString(rec.Key)
	}
	headers := make([][2]string, 0, len(rec.Headers))
	for _, h := range rec.Headers {
		headers = append(headers, [2]string{h.Key, hex.EncodeToString(h.Value)})
	}
	r.write(map[string]any{
		"kind": "rec", "p": rec.Partition, "o": rec.Offset, "k": key,
		"v": hex.EncodeToString(rec.Value), "h": headers, "ts": rec.Timestamp.UnixMilli(),
	})
}

func (r *report) done(produced, consumed int, failure error) {
	if failure != nil {
		r.write(map[string]any{"kind": "error", "message": failure.Error()})
	}
	r.write(map[string]any{"kind": "done", "produced": produced, "consumed": consumed,
		"elapsed_ms": time.Since(r.started).Milliseconds()})
	r.out.Flush()
	r.file.Close()
}

func codec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("unknown codec %q", name)
}

func createTopic(ctx context.Context, a *args) error {
	client, err := newClient(a, kgo.SeedBrokers(strings.Split(a.bootstrap, ",")...))
	if err != nil {
		return err
	}
	defer client.Close()
	admin := kadm.NewClient(client)
	responses, err := admin.CreateTopics(ctx, int32(a.partitions), 1, nil, a.topic)
	if err != nil {
		return err
	}
	for _, response := range responses {
		if response.Err != nil && !errors.Is(response.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", a.topic, response.Err)
		}
	}
	return nil
}

func produce(ctx context.Context, a *args, out *report) (int, error) {
	compression, err := codec(a.codec)
	if err != nil {
		return 0, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(a.bootstrap, ",")...),
		// The topic was created an instant ago; the default 5 s between metadata refreshes would
		// make every run wait that long for the partition leaders to appear.
		kgo.MetadataMinAge(100 * time.Millisecond),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	}
	if !a.idempotent {
		// Idempotence needs InitProducerId; the matrix checks plain produce.
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	client, err := newClient(a, append(opts,
		kgo.ProducerBatchCompression(compression),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond),
		// No RecordDeliveryTimeout: franz-go measures it from the record's own timestamp, which the
		// generator sets explicitly (possibly in the past); the context bounds the phase instead.
	)...)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	var mu sync.Mutex
	var failures []error
	acked := 0
	began := time.Now()
	for index := 0; index < a.records; index++ {
		index := index
		if a.rate > 0 {
			due := began.Add(time.Duration(index) * time.Second / time.Duration(a.rate))
			if wait := time.Until(due); wait > 0 {
				time.Sleep(wait)
			}
		}
		client.Produce(ctx, record(a, index), func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures = append(failures, fmt.Errorf("record %d: %w", index, err))
				return
			}
			acked++
			out.ack(index, r.Partition, r.Offset)
		})
	}
	if err := client.Flush(ctx); err != nil {
		return acked, err
	}
	if len(failures) > 0 {
		return acked, fmt.Errorf("produce failed (%d records), first: %w", len(failures), failures[0])
	}
	return acked, nil
}

func consume(ctx context.Context, a *args, out *report) (int, error) {
	seed, err := newClient(a, kgo.SeedBrokers(strings.Split(a.bootstrap, ",")...))
	if err != nil {
		return 0, err
	}
	ends, err := kadm.NewClient(seed).ListEndOffsets(ctx, a.topic)
	seed.Close()
	if err != nil {
		return 0, err
	}
	targets := map[int32]int64{}
	offsets := map[int32]kgo.Offset{}
	for p := 0; p < a.partitions; p++ {
		end, ok := ends.Lookup(a.topic, int32(p))
		if !ok || end.Err != nil {
			return 0, fmt.Errorf("end offset of partition %d: %v", p, end.Err)
		}
		if end.Offset > 0 {
			targets[int32(p)] = end.Offset
		}
		offsets[int32(p)] = kgo.NewOffset().AtStart()
	}
	client, err := newClient(a,
		kgo.SeedBrokers(strings.Split(a.bootstrap, ",")...),
		kgo.MetadataMinAge(100*time.Millisecond),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{a.topic: offsets}),
	)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	consumed := 0
	for len(targets) > 0 {
		fetches := client.PollFetches(ctx)
		if ctx.Err() != nil {
			return consumed, fmt.Errorf("consume timed out; %d partitions not at their end", len(targets))
		}
		var fetchErr error
		fetches.EachError(func(topic string, partition int32, err error) {
			fetchErr = fmt.Errorf("fetch %s/%d: %w", topic, partition, err)
		})
		if fetchErr != nil {
			return consumed, fetchErr
		}
		fetches.EachRecord(func(r *kgo.Record) {
			out.rec(r)
			consumed++
			if target, ok := targets[r.Partition]; ok && r.Offset+1 >= target {
				delete(targets, r.Partition)
			}
		})
	}
	return consumed, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "group-member" {
		os.Exit(groupMember(os.Args[2:]))
	}
	a := parseArgs()
	file, err := os.Create(a.report)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e-client:", err)
		os.Exit(2)
	}
	out := &report{file: file, out: bufio.NewWriterSize(file, 1<<20), started: time.Now()}
	produced, consumed := 0, 0
	run := func() error {
		if a.security, err = securityOpts(&a); err != nil {
			return err
		}
		timeout := time.Duration(a.timeoutS) * time.Second
		if a.mode == "produce" || a.mode == "roundtrip" {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if err := createTopic(ctx, &a); err != nil {
				return err
			}
			if produced, err = produce(ctx, &a, out); err != nil {
				return err
			}
		}
		if a.mode == "consume" || a.mode == "roundtrip" {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if consumed, err = consume(ctx, &a, out); err != nil {
				return err
			}
		}
		return nil
	}
	failure := run()
	out.done(produced, consumed, failure)
	if failure != nil {
		fmt.Fprintln(os.Stderr, "e2e-client:", failure)
		os.Exit(1)
	}
}
