package io.norikv.client.testing;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import org.junit.jupiter.api.Test;

/** The test helper itself: READY parsing, clean SIGTERM stop, SIGKILL, start failures. */
class EphemeralServerTest {
  private static boolean accepts(String addr) {
    int c = addr.lastIndexOf(':');
    try (Socket s = new Socket()) {
      s.connect(new InetSocketAddress(addr.substring(0, c), Integer.parseInt(addr.substring(c + 1))), 1000);
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  @Test
  void readyLineGivesBothAddressesAndSigtermStopsCleanly() {
    String bin = EphemeralServerExtension.requireBinary();
    EphemeralServer s = EphemeralServer.builder().binary(bin).build().start();
    try {
      assertTrue(s.address().startsWith("127.0.0.1:"), s.address());
      assertTrue(s.httpAddress().startsWith("127.0.0.1:"), s.httpAddress());
      assertTrue(accepts(s.address()));
      assertTrue(accepts(s.httpAddress()));
      assertTrue(s.isRunning());
    } finally {
      assertEquals(0, s.stop(), "SIGTERM ends the server with status 0\n" + s.output());
    }
    assertFalse(s.isRunning());
    assertFalse(accepts(s.address()));
  }

  @Test
  void killIsASigkill() {
    String bin = EphemeralServerExtension.requireBinary();
    EphemeralServer s = EphemeralServer.builder().binary(bin).build().start();
    s.kill();
    assertFalse(s.isRunning());
    assertEquals(128 + 9, s.stop(), "the exit status of a SIGKILLed process");
  }

  @Test
  void aServerThatExitsAtStartFailsNamingItsStatusAndOutput() {
    String bin = EphemeralServerExtension.requireBinary();
    EphemeralServer.StartException e = assertThrows(EphemeralServer.StartException.class,
        () -> EphemeralServer.builder().binary(bin).extraArgs("--no-such-flag").build().start());
    assertTrue(e.getMessage().contains("exited with status"), e.getMessage());
    assertTrue(e.getMessage().contains("no-such-flag"), "the server's own message is included: " + e.getMessage());
  }

  @Test
  void aMissingBinaryFailsToStart() {
    EphemeralServer.StartException e = assertThrows(EphemeralServer.StartException.class,
        () -> EphemeralServer.builder().binary("/nonexistent/norikv-server").build().start());
    assertTrue(e.getMessage().contains("/nonexistent/norikv-server"), e.getMessage());
  }

  @Test
  void freeAddressIsOnLoopback() {
    String a = EphemeralServer.freeAddress();
    assertTrue(a.startsWith("127.0.0.1:"));
    assertFalse(accepts(a));
  }
}
