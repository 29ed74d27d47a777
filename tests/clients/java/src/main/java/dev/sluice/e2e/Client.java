package dev.sluice.e2e;

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The official Java client in the end-to-end matrix (docs/testing.md): creates the topic, produces the
 * run's records with acks=all and the chosen codec, then reads every partition from the beginning up to
 * the high watermark, with no consumer group, and writes the JSON-lines report.
 */
public final class Client {
    private String bootstrap;
    private String topic;
    private int records;
    private String codec = "none";
    private String mode = "roundtrip";
    private int partitions = 8;
    private long seed = 1;
    private long timestampBaseMs;
    private String reportPath;
    private int timeoutS = 120;
    /** Extra client settings ({@code --property KEY=VALUE}, repeatable), given to the admin client,
     * the producer and the consumer alike: security settings (TLS, SASL) for the tests of secured
     * listeners. */
    private final Properties extra = new Properties();

    private BufferedWriter report;
    private final long startedNs = System.nanoTime();

    public static void main(String[] argv) throws Exception {
        Client client = new Client();
        client.parse(argv);
        System.exit(client.run());
    }

    private void parse(String[] argv) {
        for (int i = 0; i + 1 < argv.length; i += 2) {
            String value = argv[i + 1];
            switch (argv[i]) {
                case "--bootstrap" -> bootstrap = value;
                case "--topic" -> topic = value;
                case "--records" -> records = Integer.parseInt(value);
                case "--codec" -> codec = value;
                case "--mode" -> mode = value;
                case "--partitions" -> partitions = Integer.parseInt(value);
                case "--seed" -> seed = Long.parseUnsignedLong(value);
                case "--timestamp-base-ms" -> timestampBaseMs = Long.parseLong(value);
                case "--report" -> reportPath = value;
                case "--timeout-s" -> timeoutS = Integer.parseInt(value);
                // A cluster's agents read the client's zone from it (`sluice_az=ZONE`).
                case "--client-id" -> extra.setProperty("client.id", value);
                case "--property" -> {
                    int equals = value.indexOf('=');
                    if (equals <= 0) {
                        throw new IllegalArgumentException("--property wants KEY=VALUE, got " + value);
                    }
                    extra.setProperty(value.substring(0, equals), value.substring(equals + 1));
                }
                default -> throw new IllegalArgumentException("unknown argument " + argv[i]);
            }
        }
        if (bootstrap == null || topic == null || reportPath == null) {
            throw new IllegalArgumentException("--bootstrap, --topic and --report are required");
        }
    }

    private int run() throws IOException {
        report = Files.newBufferedWriter(Path.of(reportPath), StandardCharsets.UTF_8);
        int produced = 0;
        int consumed = 0;
        int exit = 0;
        try {
            if (mode.equals("produce") || mode.equals("roundtrip")) {
                createTopic();
                produced = produce();
            }
            if (mode.equals("consume") || mode.equals("roundtrip")) {
                consumed = consume();
            }
        } catch (Exception error) {
            write("{\"kind\":\"error\",\"message\":" + quote(error.toString()) + "}");
            System.err.println("java client: " + error);
            exit = 1;
        }
        long elapsedMs = (System.nanoTime() - startedNs) / 1_000_000;
        write("{\"kind\":\"done\",\"produced\":" + produced + ",\"consumed\":" + consumed
                + ",\"elapsed_ms\":" + elapsedMs + "}");
        report.close();
        return exit;
    }

    static long splitmix64(long x) {
        long z = x + 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /** Record {@code index} of the run: docs/testing.md, "The record generator". */
    ProducerRecord<byte[], byte[]> record(int index) {
        long h = splitmix64(seed * 0x100000001B3L + index);
        byte[] key = index % 10 == 9 ? null : ("key-" + index).getBytes(StandardCharsets.US_ASCII);
        int length = 1 + (int) Long.remainderUnsigned(h, 300);
        byte[] value = new byte[length];
        for (int j = 0; j < length; j++) {
            long b = (h >>> ((j % 8) * 8)) & 0xFF;
            value[j] = (byte) (97 + (b + j) % 26);
        }
        List<Header> headers = new ArrayList<>();
        headers.add(new RecordHeader("seq", Integer.toString(index).getBytes(StandardCharsets.US_ASCII)));
        if (index % 3 == 0) {
            byte[] hash = new byte[8];
            for (int k = 0; k < 8; k++) {
                hash[k] = (byte) (h >>> (56 - 8 * k));
            }
            headers.add(new RecordHeader("hash", hash));
        }
        if (index % 5 == 0) {
            headers.add(new RecordHeader("empty", new byte[0]));
        }
        return new ProducerRecord<>(topic, index % partitions, timestampBaseMs + index, key, value, headers);
    }

    private void createTopic() throws InterruptedException, ExecutionException {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.putAll(extra);
        try (Admin admin = Admin.create(props)) {
            try {
                admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
            } catch (ExecutionException error) {
                if (!(error.getCause() instanceof TopicExistsException)) {
                    throw error;
                }
            }
        }
    }

    private int produce() throws Exception {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        // Idempotence needs InitProducerId; the matrix checks plain produce.
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, Integer.toString(timeoutS * 1000));
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, Integer.toString(timeoutS * 1000));
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.putAll(extra);
        AtomicInteger acked = new AtomicInteger();
        List<String> failures = java.util.Collections.synchronizedList(new ArrayList<>());
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            for (int index = 0; index < records; index++) {
                final int i = index;
                producer.send(record(index), (metadata, error) -> {
                    if (error != null) {
                        failures.add("record " + i + ": " + error);
                        return;
                    }
                    acked.incrementAndGet();
                    write("{\"kind\":\"ack\",\"i\":" + i + ",\"p\":" + metadata.partition() + ",\"o\":"
                            + metadata.offset() + "}");
                });
            }
            producer.flush();
        }
        if (!failures.isEmpty()) {
            throw new IllegalStateException("produce failed (" + failures.size() + " records), first: "
                    + failures.get(0));
        }
        return acked.get();
    }

    private int consume() {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.putAll(extra);
        int consumed = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            List<TopicPartition> assigned = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                assigned.add(new TopicPartition(topic, p));
            }
            consumer.assign(assigned);
            consumer.seekToBeginning(assigned);
            Map<TopicPartition, Long> targets = new HashMap<>(consumer.endOffsets(assigned));
            Set<Integer> pending = new HashSet<>();
            targets.forEach((tp, end) -> {
                if (end > 0) {
                    pending.add(tp.partition());
                }
            });
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutS);
            while (!pending.isEmpty()) {
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("consume timed out; partitions not at their end: " + pending);
                }
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    writeRecord(r);
                    consumed++;
                    if (r.offset() + 1 >= targets.get(new TopicPartition(topic, r.partition()))) {
                        pending.remove(r.partition());
                    }
                }
            }
        }
        return consumed;
    }

    private void writeRecord(ConsumerRecord<byte[], byte[]> r) {
        StringBuilder line = new StringBuilder(256);
        line.append("{\"kind\":\"rec\",\"p\":").append(r.partition()).append(",\"o\":").append(r.offset());
        line.append(",\"k\":").append(r.key() == null ? "null" : "\"" + hex(r.key()) + "\"");
        line.append(",\"v\":\"").append(r.value() == null ? "" : hex(r.value())).append("\",\"h\":[");
        boolean first = true;
        for (Header header : r.headers()) {
            if (!first) {
                line.append(',');
            }
            first = false;
            line.append('[').append(quote(header.key())).append(",\"")
                    .append(header.value() == null ? "" : hex(header.value())).append("\"]");
        }
        line.append("],\"ts\":").append(r.timestamp()).append('}');
        write(line.toString());
    }

    private static final char[] HEX = "0123456789abcdef".toCharArray();

    static String hex(byte[] bytes) {
        char[] out = new char[bytes.length * 2];
        for (int i = 0; i < bytes.length; i++) {
            out[2 * i] = HEX[(bytes[i] >> 4) & 0xF];
            out[2 * i + 1] = HEX[bytes[i] & 0xF];
        }
        return new String(out);
    }

    static String quote(String text) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : text.toCharArray()) {
            if (c == '"' || c == '\\') {
                out.append('\\').append(c);
            } else if (c < 0x20) {
                out.append(String.format("\\u%04x", (int) c));
            } else {
                out.append(c);
            }
        }
        return out.append('"').toString();
    }

    /** Called from the producer's I/O thread and the main thread. */
    private synchronized void write(String line) {
        try {
            report.write(line);
            report.newLine();
        } catch (IOException error) {
            throw new java.io.UncheckedIOException(error);
        }
    }
}
