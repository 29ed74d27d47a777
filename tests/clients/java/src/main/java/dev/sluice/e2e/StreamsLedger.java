package dev.sluice.e2e;

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.LongSerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.InvalidStateStoreException;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;
import org.apache.kafka.streams.state.Stores;

import dev.sluice.e2e.Ledger.Balance;
import dev.sluice.e2e.TopicReader.Snapshot;

/**
 * A Kafka Streams application whose table is restored from its compacted changelog, and the driver
 * that checks it (docs/testing.md, "Kafka Streams"). Three modes, each its own process:
 *
 * <ul>
 *   <li>{@code produce}: creates the input and output topics and produces {@code --records}
 *       records of {@link Ledger} (key the account, value the amount as a long).
 *   <li>{@code process}: runs the application — input, groupByKey, aggregate into a RocksDB store
 *       {@code balances} (caching off, so every record is one changelog record), table updates to
 *       the output topic — until its store, read through interactive queries, equals the table the
 *       seed implies; with {@code --await-compaction-s} keeps it running until the changelog has
 *       been compacted (fewer records than offsets); then closes it, leaving the group, and reads
 *       the changelog and the output topic back with a plain consumer.
 *   <li>{@code restore}: the same application on an empty {@code --state-dir} (the caller deletes
 *       it), so Streams restores the store from the changelog; waits for every changelog partition's
 *       restore, reads the store and reports each entry.
 * </ul>
 *
 * One JSON object per line in {@code --report}; the Rust side judges them. The process exits 1 only
 * when something threw ({@code {"kind":"error"}}).
 */
public final class StreamsLedger {
    static final String STORE = "balances";
    private static final long POLL_INTERVAL_MS = 200;
    /** Mismatches quoted in a report line; the count is always complete. */
    private static final int EXAMPLES_MAX = 5;

    private String bootstrap;
    private String mode;
    private String input;
    private String output;
    private String applicationId;
    private String stateDir;
    private long records = 20_000;
    private int keys = 200;
    private int partitions = 4;
    private long seed = 1;
    private long commitIntervalMs = 100;
    private final Map<String, String> changelogConfigs = new TreeMap<>();
    private int awaitCompactionS = 0;
    private int timeoutS = 60;
    private String reportPath;

    private BufferedWriter report;
    private final AtomicReference<Throwable> streamsFailure = new AtomicReference<>();

    public static void main(String[] argv) throws Exception {
        StreamsLedger run = new StreamsLedger();
        run.parse(argv);
        System.exit(run.run());
    }

    private void parse(String[] argv) {
        for (int i = 0; i + 1 < argv.length; i += 2) {
            String value = argv[i + 1];
            switch (argv[i]) {
                case "--bootstrap" -> bootstrap = value;
                case "--mode" -> mode = value;
                case "--input" -> input = value;
                case "--output" -> output = value;
                case "--application-id" -> applicationId = value;
                case "--state-dir" -> stateDir = value;
                case "--records" -> records = Long.parseLong(value);
                case "--keys" -> keys = Integer.parseInt(value);
                case "--partitions" -> partitions = Integer.parseInt(value);
                case "--seed" -> seed = Long.parseUnsignedLong(value);
                case "--commit-interval-ms" -> commitIntervalMs = Long.parseLong(value);
                case "--changelog-config" -> {
                    int equals = value.indexOf('=');
                    if (equals < 1) {
                        throw new IllegalArgumentException("--changelog-config wants NAME=VALUE, got " + value);
                    }
                    changelogConfigs.put(value.substring(0, equals), value.substring(equals + 1));
                }
                case "--await-compaction-s" -> awaitCompactionS = Integer.parseInt(value);
                case "--timeout-s" -> timeoutS = Integer.parseInt(value);
                case "--report" -> reportPath = value;
                default -> throw new IllegalArgumentException("unknown argument " + argv[i]);
            }
        }
        if (bootstrap == null || mode == null || input == null || output == null || reportPath == null) {
            throw new IllegalArgumentException("--bootstrap, --mode, --input, --output and --report are required");
        }
        if (!mode.equals("produce") && (applicationId == null || stateDir == null)) {
            throw new IllegalArgumentException("--application-id and --state-dir are required to run the application");
        }
    }

    private int run() throws IOException {
        report = Files.newBufferedWriter(Path.of(reportPath), StandardCharsets.UTF_8);
        int exit = 0;
        try {
            switch (mode) {
                case "produce" -> produce();
                case "process" -> process();
                case "restore" -> restore();
                default -> throw new IllegalArgumentException("unknown mode " + mode);
            }
        } catch (Throwable error) {
            write("{\"kind\":\"error\",\"message\":" + Client.quote(error.toString()) + "}");
            System.err.println("java streams-ledger: " + error);
            error.printStackTrace();
            exit = 1;
        }
        write("{\"kind\":\"done\"}");
        report.close();
        return exit;
    }

    private String changelog() {
        return applicationId + "-" + STORE + "-changelog";
    }

    // ---------------------------------------------------------------------------------------------
    // produce

    private void produce() throws Exception {
        long startedNs = System.nanoTime();
        try (Admin admin = admin()) {
            for (String topic : List.of(input, output)) {
                try {
                    admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1)))
                            .all().get(timeoutS, TimeUnit.SECONDS);
                } catch (java.util.concurrent.ExecutionException error) {
                    if (!(error.getCause() instanceof TopicExistsException)) {
                        throw error;
                    }
                }
            }
        }
        Ledger ledger = new Ledger(seed, keys);
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, LongSerializer.class.getName());
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        try (KafkaProducer<String, Long> producer = new KafkaProducer<>(props)) {
            for (long index = 0; index < records; index++) {
                sent.add(producer.send(new ProducerRecord<>(input, ledger.account(index), ledger.amount(index))));
            }
            producer.flush();
            for (Future<RecordMetadata> ack : sent) {
                ack.get(timeoutS, TimeUnit.SECONDS);
            }
        }
        long closes = 0;
        for (long index = 0; index < records; index++) {
            closes += ledger.amount(index) == 0 ? 1 : 0;
        }
        write("{\"kind\":\"produced\",\"records\":" + records + ",\"closes\":" + closes
                + ",\"first\":{\"account\":" + Client.quote(ledger.account(0)) + ",\"amount\":" + ledger.amount(0)
                + "},\"elapsed_ms\":" + elapsedMs(startedNs) + "}");
    }

    // ---------------------------------------------------------------------------------------------
    // the application

    private Topology topology() {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.Long()))
                .groupByKey(Grouped.with(Serdes.String(), Serdes.Long()))
                .aggregate(
                        () -> new Balance(0, 0).encode(),
                        // A null aggregate deletes the key: a tombstone in the changelog and the output.
                        (account, amount, balance) -> amount == 0 ? null : Balance.decode(balance).add(amount).encode(),
                        Materialized.<String, String>as(Stores.persistentKeyValueStore(STORE))
                                .withKeySerde(Serdes.String())
                                .withValueSerde(Serdes.String())
                                .withCachingDisabled()
                                .withLoggingEnabled(changelogConfigs))
                .toStream()
                .to(output, Produced.with(Serdes.String(), Serdes.String()));
        return builder.build();
    }

    private KafkaStreams start(StateRestoreListener restoreListener) {
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.toString(commitIntervalMs));
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, "1");
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, "0");
        // The member leaves the group on close; should that fail, the next run waits out this session
        // and not the default 45 s.
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), "10000");
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), "2000");
        KafkaStreams streams = new KafkaStreams(topology(), props);
        streams.setUncaughtExceptionHandler(error -> {
            streamsFailure.compareAndSet(null, error);
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((next, previous) ->
                write("{\"kind\":\"state\",\"from\":\"" + previous + "\",\"to\":\"" + next + "\"}"));
        if (restoreListener != null) {
            streams.setGlobalStateRestoreListener(restoreListener);
        }
        streams.start();
        return streams;
    }

    private void close(KafkaStreams streams) {
        boolean closed = streams.close(CloseOptions.groupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
                .withTimeout(Duration.ofSeconds(timeoutS)));
        if (!closed) {
            throw new IllegalStateException("Kafka Streams did not close within " + timeoutS + " s");
        }
    }

    /** The store through interactive queries; null while Streams cannot serve it (rebalancing, restoring). */
    private Map<String, Balance> readStore(KafkaStreams streams) {
        if (streams.state() != KafkaStreams.State.RUNNING) {
            return null;
        }
        try {
            ReadOnlyKeyValueStore<String, String> store =
                    streams.store(StoreQueryParameters.fromNameAndType(STORE, QueryableStoreTypes.keyValueStore()));
            Map<String, Balance> table = new TreeMap<>();
            try (KeyValueIterator<String, String> entries = store.all()) {
                entries.forEachRemaining(entry -> table.put(entry.key, Balance.decode(entry.value)));
            }
            return table;
        } catch (InvalidStateStoreException notNow) {
            return null;
        }
    }

    private void checkAlive(KafkaStreams streams) {
        Throwable failure = streamsFailure.get();
        if (failure != null) {
            throw new IllegalStateException("a stream thread died: " + failure, failure);
        }
        if (streams.state() == KafkaStreams.State.ERROR || streams.state() == KafkaStreams.State.PENDING_ERROR) {
            throw new IllegalStateException("Kafka Streams is in state " + streams.state());
        }
    }

    // ---------------------------------------------------------------------------------------------
    // process

    private void process() throws Exception {
        Map<String, Balance> expected = new Ledger(seed, keys).expected(records);
        long startedNs = System.nanoTime();
        KafkaStreams streams = start(null);
        try {
            long deadlineNs = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutS);
            Map<String, Balance> table = null;
            while (System.nanoTime() < deadlineNs) {
                checkAlive(streams);
                table = readStore(streams);
                if (expected.equals(table)) {
                    break;
                }
                Thread.sleep(POLL_INTERVAL_MS);
            }
            write("{\"kind\":\"processed\",\"elapsed_ms\":" + elapsedMs(startedNs) + ","
                    + tableSummary(expected, table) + "}");
            if (!expected.equals(table)) {
                return;
            }
            awaitCompaction(streams);
        } finally {
            close(streams);
        }
        write("{\"kind\":\"closed\",\"elapsed_ms\":" + elapsedMs(startedNs) + "}");
        try (Admin admin = admin()) {
            describeChangelog(admin);
        }
        report("changelog", changelog(), expected);
        report("output", output, expected);
    }

    /**
     * Keeps the application running until its changelog serves fewer records than its offsets span
     * (the broker compacted it while Streams was writing to it) or {@code --await-compaction-s} pass.
     */
    private void awaitCompaction(KafkaStreams streams) throws Exception {
        if (awaitCompactionS <= 0) {
            return;
        }
        long startedNs = System.nanoTime();
        long deadlineNs = startedNs + TimeUnit.SECONDS.toNanos(awaitCompactionS);
        Snapshot snapshot;
        do {
            checkAlive(streams);
            snapshot = TopicReader.read(bootstrap, changelog(), timeoutS);
            if (snapshot.records() < snapshot.offsetsSpanned()) {
                break;
            }
            Thread.sleep(1000);
        } while (System.nanoTime() < deadlineNs);
        write("{\"kind\":\"compaction_wait\",\"waited_ms\":" + elapsedMs(startedNs)
                + ",\"compacted\":" + (snapshot.records() < snapshot.offsetsSpanned())
                + ",\"records\":" + snapshot.records() + ",\"offsets\":" + snapshot.offsetsSpanned() + "}");
    }

    private void describeChangelog(Admin admin) throws Exception {
        ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, changelog());
        Config config = admin.describeConfigs(List.of(resource)).all().get(timeoutS, TimeUnit.SECONDS).get(resource);
        StringBuilder line = new StringBuilder("{\"kind\":\"changelog_config\",\"topic\":")
                .append(Client.quote(changelog())).append(",\"configs\":{");
        boolean first = true;
        for (ConfigEntry entry : config.entries()) {
            line.append(first ? "" : ",").append(Client.quote(entry.name())).append(':')
                    .append(entry.value() == null ? "null" : Client.quote(entry.value()));
            first = false;
        }
        write(line.append("}}").toString());
    }

    /** Reads {@code topic} back with a plain consumer and reports how its latest values compare. */
    private void report(String kind, String topic, Map<String, Balance> expected) throws Exception {
        Snapshot snapshot = TopicReader.read(bootstrap, topic, timeoutS);
        Map<String, Balance> latest = new TreeMap<>();
        snapshot.latest().forEach((key, value) -> {
            if (value != null) {
                latest.put(key, Balance.decode(value));
            }
        });
        write("{\"kind\":\"" + kind + "\",\"topic\":" + Client.quote(topic)
                + ",\"partitions\":" + snapshot.partitions()
                + ",\"beginning\":" + snapshot.beginning() + ",\"end\":" + snapshot.end()
                + ",\"records\":" + snapshot.records() + ",\"tombstones\":" + snapshot.tombstones()
                + ",\"offset_gaps\":" + snapshot.offsetGaps() + "," + tableSummary(expected, latest) + "}");
    }

    // ---------------------------------------------------------------------------------------------
    // restore

    /** What a restore listener saw for one changelog partition. */
    private static final class Restore {
        volatile long start = -1;
        volatile long end = -1;
        volatile long restored;
        volatile boolean done;
    }

    private void restore() throws Exception {
        Path state = Path.of(stateDir);
        write("{\"kind\":\"state_dir\",\"existed\":" + Files.exists(state) + "}");
        Map<String, Balance> expected = new Ledger(seed, keys).expected(records);
        int changelogPartitions;
        try (Admin admin = admin()) {
            changelogPartitions = admin.describeTopics(List.of(changelog())).allTopicNames()
                    .get(timeoutS, TimeUnit.SECONDS).get(changelog()).partitions().size();
            describeChangelog(admin);
        }
        Map<TopicPartition, Restore> restores = new ConcurrentHashMap<>();
        StateRestoreListener listener = new StateRestoreListener() {
            @Override
            public void onRestoreStart(TopicPartition tp, String store, long startOffset, long endOffset) {
                Restore restore = restores.computeIfAbsent(tp, ignored -> new Restore());
                restore.start = startOffset;
                restore.end = endOffset;
            }

            @Override
            public void onBatchRestored(TopicPartition tp, String store, long batchEndOffset, long restored) {
                restores.computeIfAbsent(tp, ignored -> new Restore()).restored += restored;
            }

            @Override
            public void onRestoreEnd(TopicPartition tp, String store, long totalRestored) {
                Restore restore = restores.computeIfAbsent(tp, ignored -> new Restore());
                restore.restored = totalRestored;
                restore.done = true;
            }
        };
        long startedNs = System.nanoTime();
        KafkaStreams streams = start(listener);
        try {
            long deadlineNs = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutS);
            Map<String, Balance> table = null;
            while (System.nanoTime() < deadlineNs) {
                checkAlive(streams);
                long done = restores.values().stream().filter(restore -> restore.done).count();
                if (done >= changelogPartitions) {
                    table = readStore(streams);
                    // Every partition restored; a store read short of the whole table means a task
                    // is still moving from restoring to running, so read again.
                    if (table != null && table.size() >= expected.size()) {
                        break;
                    }
                }
                Thread.sleep(POLL_INTERVAL_MS);
            }
            for (Map.Entry<Integer, Restore> entry : new TreeMap<>(byPartition(restores)).entrySet()) {
                Restore restore = entry.getValue();
                write("{\"kind\":\"restore\",\"partition\":" + entry.getKey() + ",\"start\":" + restore.start
                        + ",\"end\":" + restore.end + ",\"restored\":" + restore.restored + ",\"done\":" + restore.done + "}");
            }
            write("{\"kind\":\"restored\",\"elapsed_ms\":" + elapsedMs(startedNs)
                    + ",\"changelog_partitions\":" + changelogPartitions + "," + tableSummary(expected, table) + "}");
            if (table != null) {
                for (Map.Entry<String, Balance> entry : table.entrySet()) {
                    write("{\"kind\":\"entry\",\"account\":" + Client.quote(entry.getKey()) + ",\"count\":"
                            + entry.getValue().count() + ",\"sum\":" + entry.getValue().sum() + "}");
                }
            }
        } finally {
            close(streams);
        }
        report("output", output, expected);
    }

    private static Map<Integer, Restore> byPartition(Map<TopicPartition, Restore> restores) {
        Map<Integer, Restore> out = new HashMap<>();
        restores.forEach((tp, restore) -> out.put(tp.partition(), restore));
        return out;
    }

    // ---------------------------------------------------------------------------------------------

    /** {@code "entries":N,"expected_entries":M,"mismatches":K,"examples":[...]} of a table against the expected one. */
    private static String tableSummary(Map<String, Balance> expected, Map<String, Balance> got) {
        List<String> mismatches = new ArrayList<>();
        Map<String, Balance> actual = got == null ? Map.of() : got;
        TreeMap<String, Boolean> accounts = new TreeMap<>();
        expected.keySet().forEach(account -> accounts.put(account, true));
        actual.keySet().forEach(account -> accounts.put(account, true));
        for (String account : accounts.keySet()) {
            Balance want = expected.get(account);
            Balance have = actual.get(account);
            if (want == null ? have != null : !want.equals(have)) {
                mismatches.add(account + ": expected " + (want == null ? "absent" : want.encode())
                        + ", got " + (have == null ? "absent" : have.encode()));
            }
        }
        StringBuilder examples = new StringBuilder("[");
        for (int i = 0; i < Math.min(EXAMPLES_MAX, mismatches.size()); i++) {
            examples.append(i == 0 ? "" : ",").append(Client.quote(mismatches.get(i)));
        }
        return "\"entries\":" + (got == null ? -1 : got.size()) + ",\"expected_entries\":" + expected.size()
                + ",\"mismatches\":" + mismatches.size() + ",\"examples\":" + examples.append(']');
    }

    private Admin admin() {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, Integer.toString(timeoutS * 1000));
        return Admin.create(props);
    }

    private static long elapsedMs(long startedNs) {
        return (System.nanoTime() - startedNs) / 1_000_000;
    }

    /** Called from the main thread and from Streams' state listener. */
    private synchronized void write(String line) {
        try {
            report.write(line);
            report.newLine();
            report.flush();
        } catch (IOException error) {
            throw new java.io.UncheckedIOException(error);
        }
    }
}
