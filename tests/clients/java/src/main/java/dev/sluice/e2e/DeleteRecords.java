package dev.sluice.e2e;

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.RecordsToDelete;
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
 * DeleteRecords through the official Java client (docs/testing.md, "DeleteRecords"): creates a
 * one-partition topic, produces {@code --records} records, calls {@code Admin.deleteRecords} before
 * {@code --delete-before}, and reports what the client then sees, one JSON object per line:
 *
 * <pre>
 * {"kind":"deleted","low_watermark":L}      Admin.deleteRecords' answer
 * {"kind":"offsets","beginning":B,"end":E}  consumer.beginningOffsets / endOffsets
 * {"kind":"first","offset":F}               the first record a consumer reads from the beginning
 * {"kind":"past_end","error":"..."}         deleteRecords past the end: the exception's class
 * {"kind":"to_end","low_watermark":L,"beginning":B}  deleteRecords at -1 (the high watermark)
 * {"kind":"error","message":"..."}  {"kind":"done"}
 * </pre>
 */
public final class DeleteRecords {
    private String bootstrap;
    private String topic;
    private int records = 100;
    private long deleteBefore = 40;
    private String reportPath;
    private int timeoutS = 60;
    private BufferedWriter report;

    public static void main(String[] argv) throws Exception {
        DeleteRecords run = new DeleteRecords();
        run.parse(argv);
        System.exit(run.run());
    }

    private void parse(String[] argv) {
        for (int i = 0; i + 1 < argv.length; i += 2) {
            String value = argv[i + 1];
            switch (argv[i]) {
                case "--bootstrap" -> bootstrap = value;
                case "--topic" -> topic = value;
                case "--records" -> records = Integer.parseInt(value);
                case "--delete-before" -> deleteBefore = Long.parseLong(value);
                case "--report" -> reportPath = value;
                case "--timeout-s" -> timeoutS = Integer.parseInt(value);
                default -> throw new IllegalArgumentException("unknown argument " + argv[i]);
            }
        }
        if (bootstrap == null || topic == null || reportPath == null) {
            throw new IllegalArgumentException("--bootstrap, --topic and --report are required");
        }
    }

    private int run() throws IOException {
        report = Files.newBufferedWriter(Path.of(reportPath), StandardCharsets.UTF_8);
        int exit = 0;
        TopicPartition tp = new TopicPartition(topic, 0);
        Properties adminProps = new Properties();
        adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        adminProps.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, Integer.toString(timeoutS * 1000));
        try (Admin admin = Admin.create(adminProps); KafkaConsumer<byte[], byte[]> consumer = consumer()) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(timeoutS, TimeUnit.SECONDS);
            produce();

            long lowWatermark = deleteBefore(admin, tp, deleteBefore);
            write("{\"kind\":\"deleted\",\"low_watermark\":" + lowWatermark + "}");
            long beginning = consumer.beginningOffsets(List.of(tp)).get(tp);
            long end = consumer.endOffsets(List.of(tp)).get(tp);
            write("{\"kind\":\"offsets\",\"beginning\":" + beginning + ",\"end\":" + end + "}");
            write("{\"kind\":\"first\",\"offset\":" + firstOffset(consumer, tp) + "}");

            String pastEnd = "none";
            try {
                deleteBefore(admin, tp, end + 10);
            } catch (ExecutionException error) {
                pastEnd = error.getCause().getClass().getSimpleName();
            }
            write("{\"kind\":\"past_end\",\"error\":\"" + pastEnd + "\"}");

            long toEnd = deleteBefore(admin, tp, -1);
            long beginningAfter = consumer.beginningOffsets(List.of(tp)).get(tp);
            write("{\"kind\":\"to_end\",\"low_watermark\":" + toEnd + ",\"beginning\":" + beginningAfter + "}");
        } catch (Exception error) {
            write("{\"kind\":\"error\",\"message\":" + Client.quote(error.toString()) + "}");
            System.err.println("java delete-records: " + error);
            exit = 1;
        }
        write("{\"kind\":\"done\"}");
        report.close();
        return exit;
    }

    private long deleteBefore(Admin admin, TopicPartition tp, long offset) throws Exception {
        return admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(offset)))
                .lowWatermarks().get(tp).get(timeoutS, TimeUnit.SECONDS).lowWatermark();
    }

    private void produce() throws Exception {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        // Batches of several records, so the delete lands inside one and the consumer must skip.
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int index = 0; index < records; index++) {
                byte[] value = ("record-" + index).getBytes(StandardCharsets.US_ASCII);
                sent.add(producer.send(new ProducerRecord<>(topic, 0, null, value)));
            }
            producer.flush();
            for (Future<RecordMetadata> ack : sent) {
                ack.get(timeoutS, TimeUnit.SECONDS);
            }
        }
    }

    private KafkaConsumer<byte[], byte[]> consumer() {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return new KafkaConsumer<>(props);
    }

    /** The offset of the first record served after seeking to the beginning, with no group. */
    private long firstOffset(KafkaConsumer<byte[], byte[]> consumer, TopicPartition tp) {
        consumer.assign(List.of(tp));
        consumer.seekToBeginning(List.of(tp));
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutS);
        while (System.nanoTime() < deadline) {
            for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(500))) {
                return record.offset();
            }
        }
        throw new IllegalStateException("no record read within " + timeoutS + " s");
    }

    private void write(String line) {
        try {
            report.write(line);
            report.newLine();
            report.flush();
        } catch (IOException error) {
            throw new java.io.UncheckedIOException(error);
        }
    }
}
