-- Stream units are UCUM codes (protocol/channels.py): NTU -> [NTU], dBm -> dB[mW].
-- Devices never send units, so nothing changes on the wire.
UPDATE streams SET unit = '[NTU]' WHERE unit = 'NTU';
UPDATE streams SET unit = 'dB[mW]' WHERE unit = 'dBm';
