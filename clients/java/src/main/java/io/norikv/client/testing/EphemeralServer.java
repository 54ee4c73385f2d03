package io.norikv.client.testing;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Deque;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * A real {@code norikv-server} process for tests, by default in memory
 * ({@code --ephemeral}) on free loopback ports.
 *
 * <pre>{@code
 * try (EphemeralServer server = EphemeralServer.builder().build().start();
 *      NoriKVClient client = NoriKVClient.builder().nodes(server.address()).build()) {
 *   ...
 * }
 * }</pre>
 *
 * <p>The binary is found through {@code $NORIKV_SERVER_BIN}, then
 * {@code norikv-server} on PATH, then {@code build/src/server/norikv-server}
 * under the repository that holds the working directory (or the directory
 * named by the {@code norikv.repo.root} system property). The helper reads the
 * server's {@code READY grpc=<host:port> http=<host:port>} line and stops the
 * server with SIGTERM ({@link #stop()}, SIGKILL after a grace period) or
 * SIGKILL ({@link #kill()}). Not thread-safe: one test drives one server.
 */
public final class EphemeralServer implements AutoCloseable {
  public static final String ENV_VAR = "NORIKV_SERVER_BIN";
  public static final String BINARY_NAME = "norikv-server";
  static final String REPO_RELATIVE = "build/src/server/" + BINARY_NAME;

  /** The default flags: in memory, port 0 (a free port) for every listener. */
  public static final List<String> DEFAULT_ARGS = Collections.unmodifiableList(Arrays.asList(
      "--ephemeral", "--rpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0"));

  /** Thrown when no server binary can be found. */
  public static final class NotFoundException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    NotFoundException(String m) {
      super(m);
    }
  }

  /** Thrown when the server exits or stays silent before it is ready. */
  public static final class StartException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    StartException(String m) {
      super(m);
    }
  }

  private final String binaryOverride;
  private final List<String> args;
  private final String readyAddr;
  private final Duration startupTimeout;
  private final Duration stopTimeout;

  private Process proc;
  private String binary;
  private File stderrFile;
  private Thread reader;
  private final Deque<String> lines = new ArrayDeque<>();
  private volatile String address = "";
  private volatile String httpAddress = "";
  private final CountDownLatch ready = new CountDownLatch(1);

  private EphemeralServer(Builder b) {
    this.binaryOverride = b.binary;
    List<String> a = new ArrayList<>(b.args);
    a.addAll(b.extraArgs);
    this.args = a;
    this.readyAddr = b.readyAddr;
    this.startupTimeout = b.startupTimeout;
    this.stopTimeout = b.stopTimeout;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** Configures an {@link EphemeralServer}. */
  public static final class Builder {
    private String binary;
    private List<String> args = DEFAULT_ARGS;
    private final List<String> extraArgs = new ArrayList<>();
    private String readyAddr;
    private Duration startupTimeout = Duration.ofSeconds(30);
    private Duration stopTimeout = Duration.ofSeconds(10);

    private Builder() {}

    /** The server binary; default: {@link EphemeralServer#findBinary()}. */
    public Builder binary(String path) {
      this.binary = path;
      return this;
    }

    /** Replaces the default flags ({@link #DEFAULT_ARGS}). */
    public Builder args(List<String> args) {
      this.args = new ArrayList<>(args);
      return this;
    }

    public Builder args(String... args) {
      return args(Arrays.asList(args));
    }

    /** Flags appended to the others. */
    public Builder extraArgs(String... args) {
      extraArgs.addAll(Arrays.asList(args));
      return this;
    }

    /**
     * For a server that need not print READY (one started with a data
     * directory): it counts as ready once this gRPC address accepts TCP
     * connections, or when READY appears.
     */
    public Builder readyAddr(String addr) {
      this.readyAddr = addr;
      return this;
    }

    public Builder startupTimeout(Duration d) {
      this.startupTimeout = d;
      return this;
    }

    public Builder stopTimeout(Duration d) {
      this.stopTimeout = d;
      return this;
    }

    public EphemeralServer build() {
      return new EphemeralServer(this);
    }
  }

  // ------------------------------------------------------------ discovery

  /** The server binary, or empty when none is found (see the class comment for the order). */
  public static Optional<String> findBinary() {
    String env = System.getenv(ENV_VAR);
    if (env != null && !env.isEmpty() && Files.isExecutable(Paths.get(env)) && Files.isRegularFile(Paths.get(env))) {
      return Optional.of(Paths.get(env).toAbsolutePath().toString());
    }
    String path = System.getenv("PATH");
    if (path != null) {
      for (String dir : path.split(File.pathSeparator)) {
        if (dir.isEmpty()) {
          continue;
        }
        Path p = Paths.get(dir, BINARY_NAME);
        if (Files.isRegularFile(p) && Files.isExecutable(p)) {
          return Optional.of(p.toAbsolutePath().toString());
        }
      }
    }
    Set<Path> starts = new LinkedHashSet<>();
    String root = System.getProperty("norikv.repo.root");
    if (root != null && !root.isEmpty()) {
      starts.add(Paths.get(root).toAbsolutePath().normalize());
    }
    starts.add(Paths.get("").toAbsolutePath());
    for (Path start : starts) {
      for (Path d = start; d != null; d = d.getParent()) {
        Path cand = d.resolve(REPO_RELATIVE);
        if (Files.isRegularFile(cand) && Files.isExecutable(cand)) {
          return Optional.of(cand.toString());
        }
      }
    }
    return Optional.empty();
  }

  /** Where {@link #findBinary()} looked, for messages. */
  public static String describeSearch() {
    return "$" + ENV_VAR + "=\"" + Optional.ofNullable(System.getenv(ENV_VAR)).orElse("") + "\", PATH, and <repo>/"
        + REPO_RELATIVE + " above " + Paths.get("").toAbsolutePath() + " and norikv.repo.root="
        + System.getProperty("norikv.repo.root");
  }

  /** A free loopback address, host:port (the port is free now; another process may take it later). */
  public static String freeAddress() {
    try (ServerSocket s = new ServerSocket()) {
      s.setReuseAddress(false);
      s.bind(new InetSocketAddress("127.0.0.1", 0));
      return "127.0.0.1:" + s.getLocalPort();
    } catch (IOException e) {
      throw new IllegalStateException("no free loopback port: " + e, e);
    }
  }

  // ------------------------------------------------------------ lifecycle

  /**
   * Starts the process and waits for it to be ready.
   *
   * @throws NotFoundException when no binary is found
   * @throws StartException when it exits or is not ready within the startup timeout
   */
  public EphemeralServer start() {
    if (proc != null) {
      throw new IllegalStateException("server already started");
    }
    binary = binaryOverride != null ? binaryOverride
        : findBinary().orElseThrow(() -> new NotFoundException("norikv-server not found (looked at "
            + describeSearch() + ")"));
    List<String> cmd = new ArrayList<>();
    cmd.add(binary);
    cmd.addAll(args);
    try {
      stderrFile = File.createTempFile("norikv-server-", ".log");
      ProcessBuilder pb = new ProcessBuilder(cmd)
          .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
          .redirectError(ProcessBuilder.Redirect.to(stderrFile));
      proc = pb.start();
    } catch (IOException e) {
      cleanupFiles();
      proc = null;
      throw new StartException("cannot start " + cmd + ": " + e);
    }
    Process p = proc;
    reader = new Thread(() -> readStdout(p), "norikv-server-stdout-" + p.pid());
    reader.setDaemon(true);
    reader.start();
    long deadline = System.nanoTime() + startupTimeout.toNanos();
    try {
      while (!ready.await(50, TimeUnit.MILLISECONDS)) {
        if (readyAddr != null && accepts(readyAddr)) {
          address = readyAddr;
          ready.countDown();
          break;
        }
        if (!p.isAlive()) {
          reader.join(1000);
          if (ready.getCount() == 0) {
            break;
          }
          String out = output();
          int rc = p.exitValue();
          cleanupFiles();
          proc = null;
          throw new StartException(binary + " exited with status " + rc + " before it was ready; args " + args
              + "\n" + out);
        }
        if (System.nanoTime() > deadline) {
          String out = output();
          stop();
          throw new StartException(binary + " printed no READY line within " + startupTimeout.getSeconds()
              + " s\n" + out);
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      stop();
      throw new StartException("interrupted while starting " + binary);
    }
    return this;
  }

  private void readStdout(Process p) {
    try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
      String line;
      while ((line = r.readLine()) != null) {
        synchronized (lines) {
          lines.addLast(line);
          if (lines.size() > 200) {
            lines.removeFirst();
          }
        }
        if (ready.getCount() > 0 && line.startsWith("READY ")) {
          for (String part : line.substring(6).trim().split("\\s+")) {
            int eq = part.indexOf('=');
            if (eq < 0) {
              continue;
            }
            String k = part.substring(0, eq);
            String v = part.substring(eq + 1);
            if (k.equals("grpc")) {
              address = v;
            } else if (k.equals("http")) {
              httpAddress = v;
            }
          }
          if (!address.isEmpty()) {
            ready.countDown();
          }
        }
      }
    } catch (IOException e) {
      // the process ended
    }
  }

  private static boolean accepts(String addr) {
    int colon = addr.lastIndexOf(':');
    try (Socket s = new Socket()) {
      s.connect(new InetSocketAddress(addr.substring(0, colon), Integer.parseInt(addr.substring(colon + 1))), 200);
      return true;
    } catch (IOException | RuntimeException e) {
      return false;
    }
  }

  /** The gRPC client address, host:port (set once started). */
  public String address() {
    return address;
  }

  /** The HTTP address from the READY line, or "" when not known. */
  public String httpAddress() {
    return httpAddress;
  }

  /** The binary this server runs (set once started). */
  public String binary() {
    return binary;
  }

  public long pid() {
    if (proc == null) {
      throw new IllegalStateException("server not started");
    }
    return proc.pid();
  }

  public boolean isRunning() {
    return proc != null && proc.isAlive();
  }

  /** Recent stdout lines and the stderr log, for failure messages. */
  public String output() {
    StringBuilder b = new StringBuilder("stdout:\n");
    synchronized (lines) {
      for (String l : lines) {
        b.append(l).append('\n');
      }
    }
    b.append("stderr:\n");
    if (stderrFile != null) {
      try {
        byte[] all = Files.readAllBytes(stderrFile.toPath());
        int from = Math.max(0, all.length - 8000);
        b.append(new String(all, from, all.length - from, StandardCharsets.UTF_8));
      } catch (IOException e) {
        b.append("(unreadable: ").append(e).append(")");
      }
    }
    return b.toString();
  }

  /** SIGKILL (a crash) and reap. */
  public void kill() {
    if (proc == null) {
      return;
    }
    proc.destroyForcibly();
    try {
      proc.waitFor();
      if (reader != null) {
        reader.join(2000);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    cleanupFiles();
  }

  /**
   * Sends a signal by name (e.g. "STOP", "CONT") with kill(1). For STOP and
   * CONT it returns once /proc shows the process stopped or running again
   * (up to 5 s): a stop takes effect when every thread of the process has
   * reached it, which is not yet so when kill returns.
   */
  public void signal(String name) throws IOException, InterruptedException {
    if (proc == null || !proc.isAlive()) {
      return;
    }
    int rc = new ProcessBuilder("kill", "-" + name, Long.toString(proc.pid())).inheritIO().start().waitFor();
    if (rc != 0) {
      throw new IOException("kill -" + name + " " + proc.pid() + " exited with status " + rc);
    }
    if (!name.equals("STOP") && !name.equals("CONT")) {
      return;
    }
    boolean wantStopped = name.equals("STOP");
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
    while (System.nanoTime() < deadline) {
      if (stopped(proc.pid()) == wantStopped) {
        return;
      }
      Thread.sleep(2);
    }
    throw new IOException("process " + proc.pid() + " is not " + (wantStopped ? "stopped" : "running") + " 5 s after kill -"
        + name);
  }

  /** Whether every thread of the process is stopped (state T in /proc/PID/task/TID/stat). */
  private static boolean stopped(long pid) throws IOException {
    Path tasks = Paths.get("/proc", Long.toString(pid), "task");
    if (!Files.isDirectory(tasks)) {
      return false;
    }
    try (java.util.stream.Stream<Path> ts = Files.list(tasks)) {
      for (Path t : (Iterable<Path>) ts::iterator) {
        String stat;
        try {
          stat = new String(Files.readAllBytes(t.resolve("stat")), StandardCharsets.UTF_8);
        } catch (IOException e) {
          continue; // the thread ended
        }
        // pid (comm) state ...: comm may hold spaces and parentheses
        int close = stat.lastIndexOf(')');
        char state = close >= 0 && close + 2 < stat.length() ? stat.charAt(close + 2) : '?';
        if (state != 'T' && state != 't') {
          return false;
        }
      }
    }
    return true;
  }

  /**
   * SIGTERM, wait up to the stop timeout, then SIGKILL. Returns the exit
   * status (128 + signal number when killed), or -1 when never started.
   */
  public int stop() {
    Process p = proc;
    if (p == null) {
      return -1;
    }
    try {
      if (p.isAlive()) {
        p.destroy(); // SIGTERM on Unix
        if (!p.waitFor(stopTimeout.toMillis(), TimeUnit.MILLISECONDS)) {
          p.destroyForcibly();
          p.waitFor();
        }
      }
      if (reader != null) {
        reader.join(2000);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      p.destroyForcibly();
    }
    cleanupFiles();
    return p.isAlive() ? -1 : p.exitValue();
  }

  private void cleanupFiles() {
    if (stderrFile != null) {
      if (!stderrFile.delete()) {
        stderrFile.deleteOnExit();
      }
      stderrFile = null;
    }
  }

  @Override
  public void close() {
    stop();
  }
}
