package standin;

import com.sun.management.GarbageCollectionNotificationInfo;
import com.sun.management.UnixOperatingSystemMXBean;
import java.lang.management.BufferPoolMXBean;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryType;
import java.lang.management.MemoryUsage;
import java.lang.management.ThreadInfo;
import java.lang.management.ThreadMXBean;
import java.util.EnumMap;
import java.util.Map;
import javax.management.NotificationEmitter;
import javax.management.openmbean.CompositeData;

/**
 * The JVM and process meters Spring Boot registers through Micrometer (JvmMemoryMetrics, JvmGcMetrics,
 * JvmThreadMetrics, ClassLoaderMetrics, ProcessorMetrics, UptimeMetrics, FileDescriptorMetrics, JvmInfoMetrics),
 * under the same names and tags, read from the platform MXBeans at every scrape.
 */
final class JvmMetrics {
    private JvmMetrics() {
    }

    static void register(Metrics metrics) {
        var pools = ManagementFactory.getMemoryPoolMXBeans();
        metrics.gauge("jvm_memory_used_bytes", "The amount of used memory",
            s -> pools.forEach(p -> s.sample(p.getUsage().getUsed(), "area", area(p), "id", p.getName())));
        metrics.gauge("jvm_memory_committed_bytes", "The amount of memory in bytes that is committed for the JVM",
            s -> pools.forEach(p -> s.sample(p.getUsage().getCommitted(), "area", area(p), "id", p.getName())));
        // Undefined maxima are -1, as Micrometer reports them; dashboards divide by `max > 0`.
        metrics.gauge("jvm_memory_max_bytes", "The maximum amount of memory in bytes that can be used",
            s -> pools.forEach(p -> s.sample(p.getUsage().getMax(), "area", area(p), "id", p.getName())));
        var buffers = ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class);
        metrics.gauge("jvm_buffer_memory_used_bytes", "Memory used by this buffer pool",
            s -> buffers.forEach(b -> s.sample(b.getMemoryUsed(), "id", b.getName())));
        metrics.gauge("jvm_buffer_count_buffers", "Buffers in the pool",
            s -> buffers.forEach(b -> s.sample(b.getCount(), "id", b.getName())));

        ThreadMXBean threads = ManagementFactory.getThreadMXBean();
        metrics.gauge("jvm_threads_live_threads", "The current number of live threads",
            s -> s.sample(threads.getThreadCount()));
        metrics.gauge("jvm_threads_daemon_threads", "The current number of live daemon threads",
            s -> s.sample(threads.getDaemonThreadCount()));
        metrics.gauge("jvm_threads_peak_threads", "The peak live thread count", s -> s.sample(threads.getPeakThreadCount()));
        metrics.gauge("jvm_threads_states_threads", "The current number of threads", s -> {
            Map<Thread.State, Integer> states = new EnumMap<>(Thread.State.class);
            for (Thread.State state : Thread.State.values()) {
                states.put(state, 0);
            }
            for (ThreadInfo info : threads.getThreadInfo(threads.getAllThreadIds())) {
                if (info != null) {
                    states.merge(info.getThreadState(), 1, Integer::sum);
                }
            }
            states.forEach((state, count) -> s.sample(count, "state", state.name().toLowerCase().replace('_', '-')));
        });

        var classes = ManagementFactory.getClassLoadingMXBean();
        metrics.gauge("jvm_classes_loaded_classes", "The number of classes that are currently loaded",
            s -> s.sample(classes.getLoadedClassCount()));
        metrics.gauge("jvm_classes_unloaded_classes_total", "The number of classes unloaded since the JVM started",
            s -> s.sample(classes.getUnloadedClassCount()));

        var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
        // Both loads are container-aware in JDK 21 (the cgroup's CPU quota).
        metrics.gauge("process_cpu_usage", "The recent cpu usage for the Java Virtual Machine process",
            s -> s.sample(Math.max(0, os.getProcessCpuLoad())));
        metrics.gauge("system_cpu_usage", "The recent cpu usage of the system the application is running in",
            s -> s.sample(Math.max(0, os.getCpuLoad())));
        metrics.gauge("system_cpu_count", "The number of processors available to the Java virtual machine",
            s -> s.sample(Runtime.getRuntime().availableProcessors()));
        metrics.gauge("system_load_average_1m", "The sum of the number of runnable entities queued to available "
            + "processors and the number of runnable entities running on the available processors averaged over "
            + "a period of time", s -> s.sample(os.getSystemLoadAverage()));
        if (os instanceof UnixOperatingSystemMXBean unix) {
            metrics.gauge("process_files_open_files", "The open file descriptor count",
                s -> s.sample(unix.getOpenFileDescriptorCount()));
            metrics.gauge("process_files_max_files", "The maximum file descriptor count",
                s -> s.sample(unix.getMaxFileDescriptorCount()));
        }
        var runtime = ManagementFactory.getRuntimeMXBean();
        metrics.gauge("process_uptime_seconds", "The uptime of the Java virtual machine",
            s -> s.sample(runtime.getUptime() / 1000.0));
        metrics.gauge("process_start_time_seconds", "Start time of the process since unix epoch.",
            s -> s.sample(runtime.getStartTime() / 1000.0));
        metrics.gauge("jvm_info", "JVM version info", s -> s.sample(1, "runtime", System.getProperty("java.runtime.name"),
            "vendor", System.getProperty("java.vm.vendor"), "version", System.getProperty("java.runtime.version")));

        registerGc(metrics, pools);
    }

    private static String area(MemoryPoolMXBean pool) {
        return pool.getType() == MemoryType.HEAP ? "heap" : "nonheap";
    }

    private static void registerGc(Metrics metrics, java.util.List<MemoryPoolMXBean> pools) {
        Metrics.Timer pause = metrics.timer("jvm_gc_pause_seconds", "Time spent in GC pause");
        MemoryPoolMXBean old = pools.stream()
            .filter(p -> p.getType() == MemoryType.HEAP && p.getName().matches(".*(Old Gen|Tenured).*"))
            .findFirst().orElse(null);
        if (old != null) {
            metrics.gauge("jvm_gc_max_data_size_bytes", "Max size of long-lived heap memory pool",
                s -> s.sample(old.getUsage().getMax()));
            metrics.gauge("jvm_gc_live_data_size_bytes", "Size of long-lived heap memory pool after reclamation",
                s -> {
                    MemoryUsage afterGc = old.getCollectionUsage();
                    s.sample(afterGc == null ? 0 : afterGc.getUsed());
                });
        }
        for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
            if (gc instanceof NotificationEmitter emitter) {
                emitter.addNotificationListener((notification, handback) -> {
                    if (GarbageCollectionNotificationInfo.GARBAGE_COLLECTION_NOTIFICATION.equals(notification.getType())) {
                        var info = GarbageCollectionNotificationInfo.from((CompositeData) notification.getUserData());
                        pause.record(info.getGcInfo().getDuration() / 1000.0, "action", info.getGcAction(),
                            "cause", info.getGcCause(), "gc", info.getGcName());
                    }
                }, null, null);
            }
        }
    }
}
