-- Dead letters are bounded (issue 11): a payload is kept up to
-- SWC_DEAD_LETTER_MAX_BYTES (payload_size is the size that arrived), rows older
-- than SWC_DEAD_LETTER_RETAIN_DAYS are deleted by the consumer, and
-- dead_letter_counts keeps how many arrived per day, sender and code for good.
ALTER TABLE dead_letters ADD COLUMN payload_size integer;
UPDATE dead_letters SET payload_size = length(payload);
ALTER TABLE dead_letters ALTER COLUMN payload_size SET NOT NULL;

CREATE TABLE dead_letter_counts (
    day        date   NOT NULL,
    sender     text   NOT NULL,  -- the topic's client id ('' when the topic has none)
    error_code text   NOT NULL,
    messages   bigint NOT NULL,
    bytes      bigint NOT NULL,  -- payload bytes that arrived, before the cap
    PRIMARY KEY (day, sender, error_code)
);
INSERT INTO dead_letter_counts (day, sender, error_code, messages, bytes)
SELECT (received_at AT TIME ZONE 'UTC')::date, coalesce(split_part(topic, '/', 3), ''),
       error_code, count(*), sum(payload_size)
FROM dead_letters GROUP BY 1, 2, 3;
