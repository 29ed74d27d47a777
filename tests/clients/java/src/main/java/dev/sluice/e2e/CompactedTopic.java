package dev.sluice.e2e;

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * A compacted topic end to end through the official Java client, run by
 * {@code tests/tests/compacted_topic_sluice.rs} and {@code compacted_topic_kafka.rs}. One program,
 * three modes:
 *
 * <ul>
 * <li>{@code produce}: creates the topic with the given {@code --topic-config NAME=VALUE}s and
 * writes {@code --updates} updates over {@code --keys} keys, all a pure function of {@code --seed}
 * (see {@link Plan}); writes every acknowledgement to {@code --acks} ("i partition offset").</li>
 * <li>{@code verify}: reads every partition from its beginning to its end offset (assign,
 * seekToBeginning, no group) and judges what a compacted topic must serve: every record is the
 * write acknowledged at its offset (so surviving records kept their offsets), offsets strictly
 * increase, every live key's last record is its latest write, no deleted key's value outlives its
 * tombstone; and, once compaction has done its work, no deleted key at all and fewer records than
 * were written.</li>
 * <li>{@code nudge}: writes {@code --nudge-records} records of about 230 bytes with key {@code nudge}
 * to every partition. A compaction pass needs new writes: Kafka never cleans its active segment (a
 * later append rolls it), and both Kafka and Sluice clean a partition again only once enough of it
 * is new (the dirty ratio), so a tombstone still younger than {@code delete.retention.ms} at the
 * last pass waits for the next writes. {@code verify} counts these records apart.</li>
 * </ul>
 *
 * <p>Report, one JSON object per line: {@code produced}, {@code nudged}, {@code error}; for
 * {@code verify}, first one line per key with the last record read of it ({@code "last"}: the update
 * its value names, {@code "tombstone"} or {@code "absent"}; its offset; the update that wrote it
 * last), then the {@code verify} verdict. Exit status: 0 when the mode succeeded ({@code verify}: passed), 3 when
 * {@code verify} found only what compaction has not done yet (deleted keys still present as
 * tombstones, no fewer records than written), 1 on anything else.
 */
public final class CompactedTopic {
    static final int EXIT_NOT_YET_COMPACTED = 3;
    /** Examples of each kind of failure in the report; the counts are complete. */
    private static final int EXAMPLES_MAX = 10;
    private static final String NUDGE_KEY = "nudge";

    private String bootstrap;
    private String topic;
    private String mode;
    private int partitions = 3;
    private int keys = 1000;
    private int updates = 100_000;
    private long seed = 1;
    private String codec = "lz4";
    private final Map<String, String> topicConfigs = new LinkedHashMap<>();
    private int nudgeRecords = 1;
    private String acksPath;
    private String reportPath;
    private int timeoutS = 120;
    private BufferedWriter report;

    public static void main(String[] argv) throws Exception {
        CompactedTopic run = new CompactedTopic();
        run.parse(argv);
        System.exit(run.run());
    }

    private void parse(String[] argv) {
        for (int i = 0; i + 1 < argv.length; i += 2) {
            String value = argv[i + 1];
            switch (argv[i]) {
                case "--bootstrap" -> bootstrap = value;
                case "--topic" -> topic = value;
                case "--mode" -> mode = value;
                case "--partitions" -> partitions = Integer.parseInt(value);
                case "--keys" -> keys = Integer.parseInt(value);
                case "--updates" -> updates = Integer.parseInt(value);
                case "--seed" -> seed = Long.parseLong(value);
                case "--codec" -> codec = value;
                case "--topic-config" -> {
                    int equals = value.indexOf('=');
                    if (equals < 1) {
                        throw new IllegalArgumentException("--topic-config wants NAME=VALUE, got " + value);
                    }
                    topicConfigs.put(value.substring(0, equals), value.substring(equals + 1));
                }
                case "--nudge-records" -> nudgeRecords = Integer.parseInt(value);
                case "--acks" -> acksPath = value;
                case "--report" -> reportPath = value;
                case "--timeout-s" -> timeoutS = Integer.parseInt(value);
                default -> throw new IllegalArgumentException("unknown argument " + argv[i]);
            }
        }
        if (bootstrap == null || topic == null || mode == null || reportPath == null) {
            throw new IllegalArgumentException("--bootstrap, --topic, --mode and --report are required");
        }
        if (keys < 1 || updates < keys) {
            throw new IllegalArgumentException("--updates must be at least --keys, which must be positive");
        }
    }

    private int run() throws IOException {
        report = Files.newBufferedWriter(Path.of(reportPath), StandardCharsets.UTF_8,
                StandardOpenOption.CREATE,
                StandardOpenOption.APPEND);
        int exit;
        try {
            Plan plan = new Plan(seed, keys, updates, partitions);
            exit = switch (mode) {
                case "produce" -> produce(plan);
                case "verify" -> verify(plan);
                case "nudge" -> nudge();
                default -> throw new IllegalArgumentException("unknown mode " + mode);
            };
        } catch (Exception error) {
            write("{\"kind\":\"error\",\"message\":" + Client.quote(error.toString()) + "}");
            System.err.println("java compacted-topic " + mode + ": " + error);
            error.printStackTrace();
            exit = 1;
        }
        report.close();
        return exit;
    }

    /**
     * Every update of a run, a pure function of the seed. Update {@code i} writes key
     * {@code keyOf[i]} ("key-%04d") to partition {@code key % partitions}: the first {@code keys}
     * updates write each key once, the rest pick a key from {@code splitmix64}. The last write of
     * every tenth key (key % 10 == 0) is a tombstone, so those keys end deleted; any other write
     * is a tombstone with probability 1/20, so keys are also deleted in the middle and written
     * again. A value names its key and update ("key-0042 seq-12345 ") and carries 0-119 filler
     * letters derived from the hash.
     */
    static final class Plan {
        final int keys;
        final int updates;
        final int partitions;
        final long[] hash;
        final int[] keyOf;
        final int[] lastWrite;
        final boolean[] tombstone;

        Plan(long seed, int keys, int updates, int partitions) {
            this.keys = keys;
            this.updates = updates;
            this.partitions = partitions;
            hash = new long[updates];
            keyOf = new int[updates];
            lastWrite = new int[keys];
            tombstone = new boolean[updates];
            for (int i = 0; i < updates; i++) {
                hash[i] = Client.splitmix64(seed * 0x100000001B3L + i);
                keyOf[i] = i < keys ? i : (int) Long.remainderUnsigned(hash[i], keys);
                lastWrite[keyOf[i]] = i;
            }
            for (int i = 0; i < updates; i++) {
                int key = keyOf[i];
                tombstone[i] = i == lastWrite[key] ? deleted(key) : Long.remainderUnsigned(hash[i] >>> 16, 20) == 0;
            }
        }

        static boolean deleted(int key) {
            return key % 10 == 0;
        }

        int partition(int key) {
            return key % partitions;
        }

        static String keyName(int key) {
            return String.format("key-%04d", key);
        }

        byte[] value(int i) {
            if (tombstone[i]) {
                return null;
            }
            long h = hash[i];
            StringBuilder text = new StringBuilder(keyName(keyOf[i])).append(" seq-").append(i).append(' ');
            int filler = (int) Long.remainderUnsigned(h >>> 40, 120);
            for (int j = 0; j < filler; j++) {
                text.append((char) ('a' + (((h >>> (8 * (j % 8))) & 0xFF) + j) % 26));
            }
            return text.toString().getBytes(StandardCharsets.US_ASCII);
        }

        /** The key index of "key-%04d", or -1. */
        int parseKey(byte[] key) {
            if (key == null || key.length != 8) {
                return -1;
            }
            String text = new String(key, StandardCharsets.US_ASCII);
            if (!text.startsWith("key-")) {
                return -1;
            }
            try {
                int parsed = Integer.parseInt(text.substring(4));
                return parsed >= 0 && parsed < keys && keyName(parsed).equals(text) ? parsed : -1;
            } catch (NumberFormatException error) {
                return -1;
            }
        }

        /** The update a value names ("key-0042 seq-12345 ..."), or -1. */
        static int parseSeq(byte[] value) {
            String text = new String(value, 0, Math.min(value.length, 32), StandardCharsets.US_ASCII);
            int start = text.indexOf(" seq-");
            int end = start < 0 ? -1 : text.indexOf(' ', start + 5);
            if (end < 0) {
                return -1;
            }
            try {
                return Integer.parseInt(text.substring(start + 5, end));
            } catch (NumberFormatException error) {
                return -1;
            }
        }
    }

    private Properties clientProps() {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        return props;
    }

    private int produce(Plan plan) throws Exception {
        long started = System.nanoTime();
        Properties adminProps = clientProps();
        adminProps.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, Integer.toString(timeoutS * 1000));
        try (Admin admin = Admin.create(adminProps)) {
            NewTopic newTopic = new NewTopic(topic, partitions, (short) 1).configs(topicConfigs);
            admin.createTopics(List.of(newTopic)).all().get(timeoutS, TimeUnit.SECONDS);
        }
        Properties props = clientProps();
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        // Idempotence keeps each partition's writes in send order across retries: which write of a
        // key is its latest is then the plan's, not the network's.
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, Integer.toString(timeoutS * 1000));
        int[] ackPartition = new int[plan.updates];
        long[] ackOffset = new long[plan.updates];
        Arrays.fill(ackOffset, -1);
        AtomicReference<Exception> failure = new AtomicReference<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            for (int i = 0; i < plan.updates && failure.get() == null; i++) {
                int key = plan.keyOf[i];
                int index = i;
                ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(topic, plan.partition(key),
                        Plan.keyName(key).getBytes(StandardCharsets.US_ASCII), plan.value(i));
                producer.send(record, (metadata, error) -> {
                    if (error != null) {
                        failure.compareAndSet(null, error);
                    } else {
                        ackPartition[index] = metadata.partition();
                        ackOffset[index] = metadata.offset();
                    }
                });
            }
            producer.flush();
        }
        if (failure.get() != null) {
            throw failure.get();
        }
        long[] endOffsets = new long[partitions];
        int tombstones = 0;
        try (BufferedWriter acks = acksPath == null ? null
                : Files.newBufferedWriter(Path.of(acksPath), StandardCharsets.US_ASCII)) {
            for (int i = 0; i < plan.updates; i++) {
                if (ackOffset[i] < 0) {
                    throw new IllegalStateException("update " + i + " was never acknowledged");
                }
                endOffsets[ackPartition[i]] = Math.max(endOffsets[ackPartition[i]], ackOffset[i] + 1);
                tombstones += plan.tombstone[i] ? 1 : 0;
                if (acks != null) {
                    acks.write(i + " " + ackPartition[i] + " " + ackOffset[i] + "\n");
                }
            }
        }
        int deletedKeys = 0;
        for (int key = 0; key < plan.keys; key++) {
            deletedKeys += Plan.deleted(key) ? 1 : 0;
        }
        write("{\"kind\":\"produced\",\"updates\":" + plan.updates + ",\"keys\":" + plan.keys
                + ",\"live_keys\":" + (plan.keys - deletedKeys) + ",\"deleted_keys\":" + deletedKeys
                + ",\"tombstones\":" + tombstones + ",\"end_offsets\":" + Arrays.toString(endOffsets).replace(" ", "")
                + ",\"elapsed_ms\":" + TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started) + "}");
        return 0;
    }

    private int nudge() throws Exception {
        Properties props = clientProps();
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        byte[] key = NUDGE_KEY.getBytes(StandardCharsets.US_ASCII);
        long stamp = System.currentTimeMillis();
        long[] lastOffsets = new long[partitions];
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int partition = 0; partition < partitions; partition++) {
                for (int i = 0; i < nudgeRecords; i++) {
                    // Uncompressed letters from a hash: the bytes a dirty-ratio rule counts are these.
                    long h = Client.splitmix64(stamp * 31 + (long) partition * nudgeRecords + i);
                    StringBuilder value = new StringBuilder("nudge ").append(stamp).append(' ').append(i).append(' ');
                    for (int j = 0; j < 200; j++) {
                        value.append((char) ('a' + (((h >>> (8 * (j % 8))) & 0xFF) + j) % 26));
                    }
                    sent.add(producer.send(new ProducerRecord<>(topic, partition, key,
                            value.toString().getBytes(StandardCharsets.US_ASCII))));
                }
            }
            producer.flush();
            for (Future<RecordMetadata> ack : sent) {
                RecordMetadata metadata = ack.get(timeoutS, TimeUnit.SECONDS);
                lastOffsets[metadata.partition()] = Math.max(lastOffsets[metadata.partition()], metadata.offset());
            }
        }
        write("{\"kind\":\"nudged\",\"records\":" + (long) nudgeRecords * partitions
                + ",\"last_offsets\":" + Arrays.toString(lastOffsets).replace(" ", "") + "}");
        return 0;
    }

    /** What one write of a key looked like when read back. */
    private record Seen(long offset, byte[] value) {
    }

    private int verify(Plan plan) throws Exception {
        long started = System.nanoTime();
        List<Map<Long, Integer>> acked = readAcks(plan);
        Properties props = clientProps();
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        Failures failures = new Failures();
        Seen[] last = new Seen[plan.keys];
        long[] records = new long[partitions];
        long[] lastOffset = new long[partitions];
        Arrays.fill(lastOffset, -1);
        long tombstones = 0;
        long nudges = 0;
        Map<TopicPartition, Long> beginnings;
        Map<TopicPartition, Long> ends;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int partition = 0; partition < partitions; partition++) {
                tps.add(new TopicPartition(topic, partition));
            }
            beginnings = consumer.beginningOffsets(tps, Duration.ofSeconds(timeoutS));
            ends = consumer.endOffsets(tps, Duration.ofSeconds(timeoutS));
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutS);
            while (!caughtUp(consumer, tps, ends)) {
                if (System.nanoTime() > deadline) {
                    Map<Integer, Long> positions = new HashMap<>();
                    tps.forEach(tp -> positions.put(tp.partition(), consumer.position(tp)));
                    throw new IllegalStateException("did not reach the end offsets " + ends + " within "
                            + timeoutS + " s; positions " + positions);
                }
                for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(500))) {
                    int partition = record.partition();
                    long offset = record.offset();
                    String where = partition + "/" + offset;
                    records[partition]++;
                    if (offset <= lastOffset[partition]) {
                        failures.add("offset_not_increasing", where + " after " + lastOffset[partition]);
                    }
                    lastOffset[partition] = Math.max(lastOffset[partition], offset);
                    tombstones += record.value() == null ? 1 : 0;
                    int key = plan.parseKey(record.key());
                    if (key < 0) {
                        if (record.key() != null && NUDGE_KEY.equals(new String(record.key(), StandardCharsets.US_ASCII))) {
                            nudges++;
                        } else {
                            failures.add("unknown_key", where + " key " + text(record.key()));
                        }
                        continue;
                    }
                    checkServed(plan, acked, key, record, failures);
                    last[key] = new Seen(offset, record.value());
                }
            }
        }
        long served = Arrays.stream(records).sum();
        long deletedSeen = 0;
        long deletedTombstones = 0;
        long liveOk = 0;
        int[] lastSeen = new int[plan.keys];
        for (int key = 0; key < plan.keys; key++) {
            int latest = plan.lastWrite[key];
            Seen seen = last[key];
            if (Plan.deleted(key)) {
                if (seen != null) {
                    deletedSeen++;
                    if (seen.value() == null) {
                        deletedTombstones++;
                    } else {
                        failures.add("resurrected", Plan.keyName(key) + " ends with " + text(seen.value())
                                + " at " + seen.offset() + "; its tombstone (update " + latest + ") is gone");
                    }
                }
            } else if (seen == null) {
                failures.add("missing", Plan.keyName(key) + " (latest update " + latest + ")");
            } else if (!Arrays.equals(seen.value(), plan.value(latest))) {
                failures.add("wrong_latest", Plan.keyName(key) + " ends with " + text(seen.value()) + " at "
                        + seen.offset() + "; its latest write is update " + latest);
            } else {
                liveOk++;
            }
        }
        for (int key = 0; key < plan.keys; key++) {
            Seen seen = last[key];
            String state = seen == null ? "\"absent\""
                    : seen.value() == null ? "\"tombstone\"" : Integer.toString(Plan.parseSeq(seen.value()));
            write("{\"kind\":\"key\",\"key\":\"" + Plan.keyName(key) + "\",\"last\":" + state
                    + ",\"offset\":" + (seen == null ? -1 : seen.offset()) + ",\"latest_write\":"
                    + plan.lastWrite[key] + ",\"deleted\":" + Plan.deleted(key) + "}");
        }
        long superseded = served - nudges - Arrays.stream(last).filter(seen -> seen != null).count();
        boolean compacted = deletedSeen == 0 && served - nudges < plan.updates;
        boolean passed = failures.count == 0 && compacted;
        StringBuilder line = new StringBuilder("{\"kind\":\"verify\",\"passed\":").append(passed)
                .append(",\"hard_failures\":").append(failures.count)
                .append(",\"compacted\":").append(compacted)
                .append(",\"records\":").append(served)
                .append(",\"updates\":").append(plan.updates)
                .append(",\"tombstones\":").append(tombstones)
                .append(",\"superseded\":").append(superseded)
                .append(",\"nudges\":").append(nudges)
                .append(",\"live_keys_ok\":").append(liveOk)
                .append(",\"deleted_keys_seen\":").append(deletedSeen)
                .append(",\"deleted_keys_as_tombstone\":").append(deletedTombstones)
                .append(",\"acks_checked\":").append(acked != null)
                .append(",\"partitions\":[");
        for (int partition = 0; partition < partitions; partition++) {
            TopicPartition tp = new TopicPartition(topic, partition);
            line.append(partition == 0 ? "" : ",").append("{\"p\":").append(partition)
                    .append(",\"beginning\":").append(beginnings.get(tp))
                    .append(",\"end\":").append(ends.get(tp))
                    .append(",\"records\":").append(records[partition]).append('}');
        }
        line.append("],\"failures\":").append(failures.json())
                .append(",\"elapsed_ms\":").append(TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started))
                .append('}');
        write(line.toString());
        if (failures.count > 0) {
            return 1;
        }
        return passed ? 0 : EXIT_NOT_YET_COMPACTED;
    }

    /**
     * A served record of a known key: in the key's partition and, with the acknowledgements, exactly
     * the write acknowledged at its offset (key and value); without them, a value the plan wrote for
     * that key.
     */
    private void checkServed(Plan plan, List<Map<Long, Integer>> acked, int key,
                             ConsumerRecord<byte[], byte[]> record, Failures failures) {
        String where = record.partition() + "/" + record.offset();
        if (record.partition() != plan.partition(key)) {
            failures.add("wrong_partition", where + " holds " + Plan.keyName(key));
        }
        if (acked != null) {
            Integer update = acked.get(record.partition()).get(record.offset());
            if (update == null) {
                failures.add("not_acknowledged", where + " holds " + Plan.keyName(key)
                        + " but no write was acknowledged there");
            } else if (plan.keyOf[update] != key || !Arrays.equals(record.value(), plan.value(update))) {
                failures.add("moved", where + " holds " + Plan.keyName(key) + " " + text(record.value())
                        + "; update " + update + " (" + Plan.keyName(plan.keyOf[update]) + ") was acknowledged there");
            }
        } else if (record.value() != null) {
            int update = Plan.parseSeq(record.value());
            if (update < 0 || update >= plan.updates || plan.keyOf[update] != key
                    || !Arrays.equals(record.value(), plan.value(update))) {
                failures.add("corrupt", where + " holds " + Plan.keyName(key) + " " + text(record.value()));
            }
        }
    }

    /** Per partition, offset to update, from the produce run's acknowledgements; null without --acks. */
    private List<Map<Long, Integer>> readAcks(Plan plan) throws IOException {
        if (acksPath == null) {
            return null;
        }
        List<Map<Long, Integer>> acked = new ArrayList<>();
        for (int partition = 0; partition < partitions; partition++) {
            acked.add(new HashMap<>());
        }
        int lines = 0;
        try (BufferedReader reader = Files.newBufferedReader(Path.of(acksPath), StandardCharsets.US_ASCII)) {
            for (String text = reader.readLine(); text != null; text = reader.readLine()) {
                String[] fields = text.split(" ");
                acked.get(Integer.parseInt(fields[1])).put(Long.parseLong(fields[2]), Integer.parseInt(fields[0]));
                lines++;
            }
        }
        if (lines != plan.updates) {
            throw new IllegalStateException(acksPath + " holds " + lines + " acknowledgements, not " + plan.updates);
        }
        return acked;
    }

    /** Failures by kind, with the first few examples of each. */
    private static final class Failures {
        final Map<String, List<String>> examples = new LinkedHashMap<>();
        final Map<String, Long> counts = new LinkedHashMap<>();
        long count;

        void add(String kind, String example) {
            count++;
            counts.merge(kind, 1L, Long::sum);
            List<String> list = examples.computeIfAbsent(kind, ignored -> new ArrayList<>());
            if (list.size() < EXAMPLES_MAX) {
                list.add(example);
            }
        }

        String json() {
            StringBuilder out = new StringBuilder("{");
            for (Map.Entry<String, Long> entry : counts.entrySet()) {
                out.append(out.length() == 1 ? "" : ",").append(Client.quote(entry.getKey()))
                        .append(":{\"count\":").append(entry.getValue()).append(",\"examples\":[");
                List<String> list = examples.get(entry.getKey());
                for (int i = 0; i < list.size(); i++) {
                    out.append(i == 0 ? "" : ",").append(Client.quote(list.get(i)));
                }
                out.append("]}");
            }
            return out.append('}').toString();
        }
    }

    private static String text(byte[] bytes) {
        if (bytes == null) {
            return "null";
        }
        String text = new String(bytes, StandardCharsets.US_ASCII);
        return "\"" + (text.length() > 40 ? text.substring(0, 40) + "..." : text) + "\"";
    }

    private static boolean caughtUp(KafkaConsumer<byte[], byte[]> consumer, List<TopicPartition> tps,
                                    Map<TopicPartition, Long> ends) {
        for (TopicPartition tp : tps) {
            if (consumer.position(tp) < ends.get(tp)) {
                return false;
            }
        }
        return true;
    }

    private void write(String line) throws IOException {
        report.write(line);
        report.newLine();
        report.flush();
    }
}
