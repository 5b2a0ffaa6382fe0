-- Each device's data keys (schemas/sealing.py): the gateway seals every record it writes to the broker under the
-- device's current key, and the worker opens them with it. Deleting a device's data or the account deletes its
-- keys here, and with them every copy of its records anywhere in the broker becomes unreadable at once
-- (crypto-shredding, docs/design.md "Delete means gone"). The key id is random and names nothing.
CREATE TABLE IF NOT EXISTS data_keys
(
    user_id    String,
    device_id  String,
    key_id     UUID,
    key        String,
    created_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(created_at)
ORDER BY (user_id, device_id, key_id)
