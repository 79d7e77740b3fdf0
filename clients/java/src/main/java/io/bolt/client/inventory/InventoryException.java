package io.bolt.client.inventory;

/** A provider could not list instances: a bad file or spec, an API error. */
public class InventoryException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public InventoryException(String message) {
    super(message);
  }

  public InventoryException(String message, Throwable cause) {
    super(message, cause);
  }
}
