-- Device status messages (swc/v1/{id}/status, protocol.messages.DeviceStatus) are
-- stored (issue 13): the latest status of each device, shown by /devices.
-- firmware (0001) is set from the status too.
ALTER TABLE devices
    ADD COLUMN status_state       text CHECK (status_state IN ('online', 'offline')),
    ADD COLUMN status_at          timestamptz,       -- the device's clock at the status
    ADD COLUMN status_received_at timestamptz,       -- when ingest received it
    ADD COLUMN status_battery_v   double precision,
    ADD COLUMN status_rssi_dbm    double precision,
    ADD COLUMN status_details     jsonb;
