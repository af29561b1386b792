package standin;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.atomic.DoubleAdder;
import java.util.function.Consumer;

/**
 * A small meter registry rendering the Prometheus text format (version 0.0.4) the way Micrometer's
 * PrometheusMeterRegistry does: counters end in _total; timers are in seconds, a summary (_count, _sum) or,
 * with buckets, a histogram (_bucket with le, _count, _sum), each with a _max gauge; every series carries the
 * common tag `application` (MANAGEMENT_METRICS_TAGS_APPLICATION).
 */
final class Metrics {
    /** Bucket bounds of the request timer (seconds): enough resolution around the latency alert's threshold. */
    static final double[] REQUEST_BUCKETS = {0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5,
        2, 2.5, 5, 10, 30};
    /** Micrometer's _max is the largest value of a sliding window; this one's window is two minutes. */
    private static final long MAX_WINDOW_NANOS = 120_000_000_000L;

    private final String[] commonTag;
    private final Map<String, Family> families = new ConcurrentSkipListMap<>();

    Metrics(String application) {
        this.commonTag = application == null ? new String[0] : new String[] {"application", application};
    }

    /** What a gauge callback adds its samples to, at scrape time. */
    interface Sink {
        void sample(double value, String... labels);
    }

    private abstract static class Family {
        final String name;
        final String help;

        Family(String name, String help) {
            this.name = name;
            this.help = help;
        }

        abstract void render(Metrics registry, StringBuilder out);
    }

    final class Counter extends Family {
        private final Map<List<String>, DoubleAdder> values = new ConcurrentHashMap<>();

        Counter(String name, String help) {
            super(name, help);
        }

        void increment(String... labels) {
            add(1, labels);
        }

        void add(double amount, String... labels) {
            values.computeIfAbsent(List.of(labels), k -> new DoubleAdder()).add(amount);
        }

        @Override
        void render(Metrics registry, StringBuilder out) {
            if (values.isEmpty()) {
                return;
            }
            header(out, name, help, "counter");
            values.forEach((labels, value) -> line(out, name, labels.toArray(String[]::new), value.sum()));
        }
    }

    final class Timer extends Family {
        private final double[] buckets;
        private final Map<List<String>, Stats> values = new ConcurrentHashMap<>();

        Timer(String name, String help, double[] buckets) {
            super(name, help);
            this.buckets = buckets;
        }

        void record(double seconds, String... labels) {
            values.computeIfAbsent(List.of(labels), k -> new Stats(buckets.length)).record(seconds, buckets);
        }

        @Override
        void render(Metrics registry, StringBuilder out) {
            if (values.isEmpty()) {
                return;
            }
            header(out, name, help, buckets.length > 0 ? "histogram" : "summary");
            List<Runnable> maxima = new ArrayList<>();
            values.forEach((labelList, stats) -> {
                String[] labels = labelList.toArray(String[]::new);
                long[] counts;
                long count;
                double sum;
                double max;
                synchronized (stats) {
                    counts = stats.buckets.clone();
                    count = stats.count;
                    sum = stats.sum;
                    max = stats.max();
                }
                long cumulative = 0;
                for (int i = 0; i < buckets.length; i++) {
                    cumulative += counts[i];
                    line(out, name + "_bucket", with(labels, "le", number(buckets[i])), cumulative);
                }
                if (buckets.length > 0) {
                    line(out, name + "_bucket", with(labels, "le", "+Inf"), count);
                }
                line(out, name + "_count", labels, count);
                line(out, name + "_sum", labels, sum);
                maxima.add(() -> line(out, name + "_max", labels, max));
            });
            header(out, name + "_max", help, "gauge");
            maxima.forEach(Runnable::run);
        }
    }

    private static final class Stats {
        final long[] buckets;
        long count;
        double sum;
        double currentMax;
        double previousMax;
        long windowStart = System.nanoTime();

        Stats(int buckets) {
            this.buckets = new long[buckets];
        }

        synchronized void record(double seconds, double[] bounds) {
            count++;
            sum += seconds;
            for (int i = 0; i < bounds.length; i++) {
                if (seconds <= bounds[i]) {
                    buckets[i]++;
                    break;
                }
            }
            rotate();
            currentMax = Math.max(currentMax, seconds);
        }

        double max() {
            rotate();
            return Math.max(currentMax, previousMax);
        }

        private void rotate() {
            long now = System.nanoTime();
            if (now - windowStart > MAX_WINDOW_NANOS / 2) {
                previousMax = now - windowStart > MAX_WINDOW_NANOS ? 0 : currentMax;
                currentMax = 0;
                windowStart = now;
            }
        }
    }

    private final class Gauge extends Family {
        private final String type;
        private final Consumer<Sink> callback;

        Gauge(String name, String help, String type, Consumer<Sink> callback) {
            super(name, help);
            this.type = type;
            this.callback = callback;
        }

        @Override
        void render(Metrics registry, StringBuilder out) {
            StringBuilder samples = new StringBuilder();
            callback.accept((value, labels) -> line(samples, name, labels, value));
            if (!samples.isEmpty()) {
                header(out, name, help, type);
                out.append(samples);
            }
        }
    }

    Counter counter(String name, String help) {
        return (Counter) families.computeIfAbsent(name, n -> new Counter(n, help));
    }

    Timer timer(String name, String help, double... buckets) {
        return (Timer) families.computeIfAbsent(name, n -> new Timer(n, help, buckets));
    }

    /** A gauge (or a counter kept elsewhere, when the name ends in _total) read at every scrape. */
    void gauge(String name, String help, Consumer<Sink> callback) {
        families.put(name, new Gauge(name, help, name.endsWith("_total") ? "counter" : "gauge", callback));
    }

    String scrape() {
        StringBuilder out = new StringBuilder(16 * 1024);
        for (Family family : families.values()) {
            try {
                family.render(this, out);
            } catch (RuntimeException e) {
                // One failing callback (a store down) leaves out its family, not the whole scrape.
                Log.debug("metric " + family.name + " left out: " + e);
            }
        }
        return out.toString();
    }

    private static void header(StringBuilder out, String name, String help, String type) {
        out.append("# HELP ").append(name).append(' ').append(help.replace("\\", "\\\\").replace("\n", "\\n"))
            .append('\n').append("# TYPE ").append(name).append(' ').append(type).append('\n');
    }

    private void line(StringBuilder out, String name, String[] labels, double value) {
        out.append(name).append('{');
        String[] all = with(commonTag, labels);
        for (int i = 0; i + 1 < all.length; i += 2) {
            if (i > 0) {
                out.append(',');
            }
            out.append(all[i]).append("=\"").append(escape(all[i + 1])).append('"');
        }
        out.append("} ").append(number(value)).append('\n');
    }

    private static String[] with(String[] labels, String... more) {
        String[] all = Arrays.copyOf(labels, labels.length + more.length);
        System.arraycopy(more, 0, all, labels.length, more.length);
        return all;
    }

    private static String escape(String value) {
        return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n");
    }

    static String number(double value) {
        if (Double.isNaN(value)) {
            return "NaN";
        }
        if (Double.isInfinite(value)) {
            return value > 0 ? "+Inf" : "-Inf";
        }
        return Double.toString(value);
    }
}
