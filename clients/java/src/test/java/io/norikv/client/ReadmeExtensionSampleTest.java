package io.norikv.client;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.norikv.client.testing.EphemeralServer;
import io.norikv.client.testing.EphemeralServerExtension;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

@ExtendWith(EphemeralServerExtension.class)
class ReadmeExtensionSampleTest {
  @Test
  void roundTrip(EphemeralServer server) {
    try (NoriKVClient client = NoriKVClient.builder().nodes(server.address()).build()) {
      client.put("greeting", "hello");
      assertEquals("hello", client.get("greeting").getValueAsString());
    }
  }
}
