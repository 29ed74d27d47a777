package dev.sluice.e2e;

import java.util.Map;
import java.util.TreeMap;

/**
 * The input of the Kafka Streams scenario and the table it must produce (docs/testing.md, "Kafka
 * Streams"), a pure function of {@code (seed, records, keys)}; {@code tests/src/streams.rs} computes
 * the same in Rust.
 *
 * <pre>
 * h       = splitmix64(seed * 0x100000001B3 + i)             (wrapping 64-bit arithmetic)
 * account = "account-%03d" of h % keys
 * amount  = 0 if (h >>> 20) % 50 == 0 (the account is closed: a tombstone), else 1 + (h >>> 32) % 1000
 * </pre>
 *
 * The table folds each account's records in order: an amount adds one to the count and the amount
 * to the sum; a 0 removes the account, and a later amount opens it again from zero.
 */
final class Ledger {
    /** One account of the table: {@code count:sum} is also how the store and the topics hold it. */
    record Balance(long count, long sum) {
        Balance add(long amount) {
            return new Balance(count + 1, sum + amount);
        }

        String encode() {
            return count + ":" + sum;
        }

        static Balance decode(String text) {
            int colon = text.indexOf(':');
            if (colon < 0) {
                throw new IllegalArgumentException("not count:sum: " + text);
            }
            return new Balance(Long.parseLong(text.substring(0, colon)), Long.parseLong(text.substring(colon + 1)));
        }
    }

    /** One in this many records closes its account. */
    static final long CLOSE_EVERY = 50;
    static final long AMOUNT_MAX = 1000;

    private final long seed;
    private final int keys;

    Ledger(long seed, int keys) {
        this.seed = seed;
        this.keys = keys;
    }

    private long hash(long index) {
        return Client.splitmix64(seed * 0x100000001B3L + index);
    }

    String account(long index) {
        return String.format("account-%03d", Long.remainderUnsigned(hash(index), keys));
    }

    /** The record's amount; 0 closes the account. */
    long amount(long index) {
        long h = hash(index);
        if (Long.remainderUnsigned(h >>> 20, CLOSE_EVERY) == 0) {
            return 0;
        }
        return 1 + Long.remainderUnsigned(h >>> 32, AMOUNT_MAX);
    }

    /** The table after records {@code 0..records}: open accounts only, sorted by account. */
    Map<String, Balance> expected(long records) {
        Map<String, Balance> table = new TreeMap<>();
        for (long index = 0; index < records; index++) {
            String account = account(index);
            long amount = amount(index);
            if (amount == 0) {
                table.remove(account);
            } else {
                table.put(account, table.getOrDefault(account, new Balance(0, 0)).add(amount));
            }
        }
        return table;
    }
}
