package dev.sluice.e2e;

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * A consumer-group member for the group scenarios (docs/testing.md, "Consumer groups"): subscribes to
 * the topic in a group, processes each record by logging it, commits synchronously after each poll, and
 * reports every rebalance callback. SIGTERM closes the consumer (a clean leave); SIGKILL is a crash.
 *
 * <p>One JSON object per line, flushed at once so a killed member loses at most the line being written;
 * {@code t} is wall-clock microseconds, comparable across the processes of one machine.
 */
public final class GroupMember {
    private String bootstrap;
    private String topic;
    private String group;
    private String reportPath;
    private String protocol = "classic";
    private String assignor = "";
    private String instanceId = "";
    private int sessionTimeoutMs = 6000;
    private int heartbeatIntervalMs = 1000;
    private int rate;
    private String paceFile = "";
    private boolean logCommitted;
    private int timeoutS = 300;
    private String name = "member";

    private BufferedWriter report;
    private volatile boolean stopping;
    private final Set<Integer> owned = new TreeSet<>();
    /** Processed and not yet committed: partition → the offset to commit. */
    private final Map<TopicPartition, OffsetAndMetadata> pending = new HashMap<>();
    private KafkaConsumer<byte[], byte[]> consumer;

    public static void main(String[] argv) throws Exception {
        GroupMember member = new GroupMember();
        member.parse(argv);
        System.exit(member.run());
    }

    private void parse(String[] argv) {
        for (int i = 0; i + 1 < argv.length; i += 2) {
            String value = argv[i + 1];
            switch (argv[i]) {
                case "--bootstrap" -> bootstrap = value;
                case "--topic" -> topic = value;
                case "--group" -> group = value;
                case "--report" -> reportPath = value;
                case "--protocol" -> protocol = value;
                case "--assignor" -> assignor = value;
                case "--instance-id" -> instanceId = value;
                case "--session-timeout-ms" -> sessionTimeoutMs = Integer.parseInt(value);
                case "--heartbeat-interval-ms" -> heartbeatIntervalMs = Integer.parseInt(value);
                case "--rate" -> rate = Integer.parseInt(value);
                case "--pace-file" -> paceFile = value;
                case "--log-committed" -> logCommitted = value.equals("true");
                case "--timeout-s" -> timeoutS = Integer.parseInt(value);
                case "--name" -> name = value;
                default -> throw new IllegalArgumentException("unknown argument " + argv[i]);
            }
        }
        if (bootstrap == null || topic == null || group == null || reportPath == null) {
            throw new IllegalArgumentException("--bootstrap, --topic, --group and --report are required");
        }
    }

    private Properties properties() {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, name);
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        // Small batches, so a throttled member processes records evenly over time.
        props.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "10");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        if (protocol.equals("classic")) {
            // The consumer protocol takes both from the broker and refuses them here.
            props.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, Integer.toString(sessionTimeoutMs));
            props.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, Integer.toString(heartbeatIntervalMs));
            String strategy = switch (assignor) {
                case "", "cooperative-sticky" -> "org.apache.kafka.clients.consumer.CooperativeStickyAssignor";
                case "range" -> "org.apache.kafka.clients.consumer.RangeAssignor";
                case "roundrobin" -> "org.apache.kafka.clients.consumer.RoundRobinAssignor";
                case "sticky" -> "org.apache.kafka.clients.consumer.StickyAssignor";
                default -> throw new IllegalArgumentException("unknown assignor " + assignor);
            };
            props.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, strategy);
        } else if (!assignor.isEmpty()) {
            props.put(ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, assignor);
        }
        if (!instanceId.isEmpty()) {
            props.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instanceId);
        }
        return props;
    }

    private int run() throws Exception {
        report = Files.newBufferedWriter(Path.of(reportPath), StandardCharsets.UTF_8);
        int exit = 0;
        long consumed = 0;
        CountDownLatch finished = new CountDownLatch(1);
        Thread main = Thread.currentThread();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stopping = true;
            KafkaConsumer<byte[], byte[]> c = consumer;
            if (c != null) {
                c.wakeup();
            }
            try {
                // The JVM exits when the hooks return: let the main thread close the consumer first.
                finished.await(60, TimeUnit.SECONDS);
            } catch (InterruptedException ignored) {
                main.interrupt();
            }
        }));
        try {
            consumer = new KafkaConsumer<>(properties());
            write("{\"kind\":\"started\",\"t\":" + nowUs() + ",\"name\":" + Client.quote(name) + "}");
            consumer.subscribe(List.of(topic), new Listener());
            consumed = consumeLoop();
        } catch (Exception error) {
            write("{\"kind\":\"error\",\"t\":" + nowUs() + ",\"message\":" + Client.quote(error.toString()) + "}");
            System.err.println("java group member: " + error);
            exit = 1;
        } finally {
            if (consumer != null) {
                write("{\"kind\":\"closing\",\"t\":" + nowUs() + "}");
                try {
                    consumer.close(Duration.ofSeconds(30));
                } catch (Exception error) {
                    write("{\"kind\":\"error\",\"t\":" + nowUs() + ",\"message\":"
                            + Client.quote("close: " + error) + "}");
                    exit = 1;
                }
                write("{\"kind\":\"closed\",\"t\":" + nowUs() + "}");
            }
            write("{\"kind\":\"done\",\"t\":" + nowUs() + ",\"consumed\":" + consumed + "}");
            report.close();
            finished.countDown();
        }
        return exit;
    }

    private long consumeLoop() throws InterruptedException {
        long consumed = 0;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutS);
        long nextBatchNs = System.nanoTime();
        while (!stopping) {
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("member ran past --timeout-s " + timeoutS);
            }
            ConsumerRecords<byte[], byte[]> records;
            try {
                records = consumer.poll(Duration.ofMillis(200));
            } catch (WakeupException woken) {
                break;
            }
            if (records.isEmpty()) {
                // A commit refused during a rebalance is retried once it is over.
                if (!pending.isEmpty()) {
                    try {
                        commitPending(pending.keySet());
                    } catch (WakeupException woken) {
                        break;
                    }
                }
                continue;
            }
            for (ConsumerRecord<byte[], byte[]> r : records) {
                write("{\"kind\":\"consumed\",\"t\":" + nowUs() + ",\"p\":" + r.partition() + ",\"o\":"
                        + r.offset() + ",\"i\":" + sequence(r) + "}");
                pending.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                consumed++;
            }
            try {
                commitPending(pending.keySet());
            } catch (WakeupException woken) {
                break;
            }
            if (rate > 0 && (paceFile.isEmpty() || !Files.exists(Path.of(paceFile)))) {
                nextBatchNs = Math.max(nextBatchNs, System.nanoTime())
                        + TimeUnit.SECONDS.toNanos(1) * records.count() / rate;
                long sleepNs = nextBatchNs - System.nanoTime();
                if (sleepNs > 0) {
                    Thread.sleep(sleepNs / 1_000_000, (int) (sleepNs % 1_000_000));
                }
            }
        }
        return consumed;
    }

    /**
     * Commits what was processed on {@code partitions} and not committed yet. A refused commit
     * (CommitFailedException, RebalanceInProgressException, a timeout) keeps it pending: it is
     * retried after the next poll, or in the revocation callback, and if the partition is lost first
     * its records stay uncommitted and whoever owns it next reads them again.
     */
    private void commitPending(Collection<TopicPartition> partitions) {
        Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
        for (TopicPartition tp : partitions) {
            OffsetAndMetadata offset = pending.get(tp);
            if (offset != null) {
                offsets.put(tp, offset);
            }
        }
        if (offsets.isEmpty()) {
            return;
        }
        try {
            consumer.commitSync(offsets, Duration.ofSeconds(10));
            write("{\"kind\":\"committed\",\"t\":" + nowUs() + ",\"offsets\":" + offsetsJson(offsets) + "}");
            offsets.keySet().forEach(pending::remove);
        } catch (WakeupException woken) {
            throw woken;
        } catch (KafkaException error) {
            write("{\"kind\":\"commit_failed\",\"t\":" + nowUs() + ",\"message\":"
                    + Client.quote(error.toString()) + "}");
        }
    }

    /** The generator's index, from the record's {@code seq} header; -1 if it has none. */
    private static long sequence(ConsumerRecord<byte[], byte[]> r) {
        Header seq = r.headers().lastHeader("seq");
        if (seq == null || seq.value() == null) {
            return -1;
        }
        return Long.parseLong(new String(seq.value(), StandardCharsets.US_ASCII));
    }

    private final class Listener implements ConsumerRebalanceListener {
        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            // The last chance to commit what was processed: the next owner starts at the commit.
            try {
                commitPending(partitions);
            } catch (WakeupException woken) {
                stopping = true;
            }
            partitions.forEach(pending::remove);
            change("revoked", partitions, false);
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> partitions) {
            partitions.forEach(pending::remove);
            change("lost", partitions, false);
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            change("assigned", partitions, true);
            if (logCommitted && !partitions.isEmpty()) {
                Map<TopicPartition, OffsetAndMetadata> committed =
                        consumer.committed(new HashSet<>(partitions), Duration.ofSeconds(10));
                Map<Integer, Long> known = new TreeMap<>();
                for (TopicPartition tp : partitions) {
                    OffsetAndMetadata offset = committed.get(tp);
                    known.put(tp.partition(), offset == null ? -1 : offset.offset());
                }
                write("{\"kind\":\"committed_fetch\",\"t\":" + nowUs() + ",\"offsets\":" + pairsJson(known) + "}");
            }
        }
    }

    private void change(String kind, Collection<TopicPartition> partitions, boolean add) {
        Set<Integer> delta = new TreeSet<>();
        for (TopicPartition tp : partitions) {
            delta.add(tp.partition());
        }
        if (add) {
            owned.addAll(delta);
        } else {
            owned.removeAll(delta);
        }
        write("{\"kind\":\"" + kind + "\",\"t\":" + nowUs() + ",\"partitions\":" + delta + ",\"owned\":"
                + owned + "}");
    }

    private static String offsetsJson(Map<TopicPartition, OffsetAndMetadata> offsets) {
        Map<Integer, Long> sorted = new TreeMap<>();
        offsets.forEach((tp, offset) -> sorted.put(tp.partition(), offset.offset()));
        return pairsJson(sorted);
    }

    private static String pairsJson(Map<Integer, Long> sorted) {
        StringBuilder out = new StringBuilder("[");
        sorted.forEach((partition, offset) -> {
            if (out.length() > 1) {
                out.append(',');
            }
            out.append('[').append(partition).append(',').append(offset).append(']');
        });
        return out.append(']').toString();
    }

    private static long nowUs() {
        Instant now = Instant.now();
        return now.getEpochSecond() * 1_000_000L + now.getNano() / 1_000;
    }

    /** Called from the main thread and, for the last lines, after the shutdown hook woke it. */
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
