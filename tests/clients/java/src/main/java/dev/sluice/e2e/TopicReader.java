package dev.sluice.e2e;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * Reads every partition of a topic of string keys and values from its beginning to its end offset,
 * with no consumer group, and keeps the latest value of each key (null for a tombstone). What a
 * compacted log serves is told apart from what it spans: a compacted changelog serves fewer records
 * than its offsets, and its offsets have gaps.
 */
final class TopicReader {
    /**
     * One read of a topic. {@code beginning} and {@code end} are summed over partitions;
     * {@code offsetGaps} counts places where a record's offset is not its predecessor's plus one.
     */
    record Snapshot(int partitions, long beginning, long end, long records, long tombstones, long offsetGaps,
                    Map<String, String> latest) {
        long offsetsSpanned() {
            return end - beginning;
        }
    }

    private TopicReader() {
    }

    static Snapshot read(String bootstrap, String topic, int timeoutS) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(topic, Duration.ofSeconds(timeoutS))) {
                tps.add(new TopicPartition(topic, info.partition()));
            }
            if (tps.isEmpty()) {
                throw new IllegalStateException("topic " + topic + " has no partitions");
            }
            Map<TopicPartition, Long> beginnings = consumer.beginningOffsets(tps, Duration.ofSeconds(timeoutS));
            Map<TopicPartition, Long> ends = consumer.endOffsets(tps, Duration.ofSeconds(timeoutS));
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<String, String> latest = new TreeMap<>();
            Map<TopicPartition, Long> lastOffsets = new HashMap<>();
            long records = 0;
            long tombstones = 0;
            long gaps = 0;
            long deadlineNs = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutS);
            while (!caughtUp(consumer, tps, ends)) {
                if (System.nanoTime() > deadlineNs) {
                    Map<TopicPartition, Long> positions = new TreeMap<>((a, b) -> Integer.compare(a.partition(), b.partition()));
                    tps.forEach(tp -> positions.put(tp, consumer.position(tp)));
                    throw new IllegalStateException("reading " + topic + " did not reach the end offsets " + ends
                            + " within " + timeoutS + " s; positions " + positions);
                }
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(500))) {
                    TopicPartition tp = new TopicPartition(record.topic(), record.partition());
                    Long previous = lastOffsets.put(tp, record.offset());
                    long expectedOffset = previous == null ? beginnings.get(tp) : previous + 1;
                    gaps += record.offset() == expectedOffset ? 0 : 1;
                    records++;
                    tombstones += record.value() == null ? 1 : 0;
                    latest.put(record.key(), record.value());
                }
            }
            long beginning = beginnings.values().stream().mapToLong(Long::longValue).sum();
            long end = ends.values().stream().mapToLong(Long::longValue).sum();
            return new Snapshot(tps.size(), beginning, end, records, tombstones, gaps, latest);
        }
    }

    private static boolean caughtUp(KafkaConsumer<String, String> consumer, List<TopicPartition> tps,
                                    Map<TopicPartition, Long> ends) {
        for (TopicPartition tp : tps) {
            if (consumer.position(tp) < ends.get(tp)) {
                return false;
            }
        }
        return true;
    }
}
