-- Sample data for the demo: a small shop in schema "demo". Loaded straight into PostgreSQL; the
-- Redshift emulator serves it as Redshift tables. Re-running replaces it.
DROP SCHEMA IF EXISTS demo CASCADE;
CREATE SCHEMA demo;

CREATE TABLE demo.customers (
    id          integer PRIMARY KEY,
    name        varchar(100) NOT NULL,
    email       varchar(200),
    country     char(2),
    created_at  timestamptz NOT NULL,
    updated_at  timestamp NOT NULL
);

CREATE TABLE demo.orders (
    id          bigint PRIMARY KEY,
    customer_id integer NOT NULL,
    amount      numeric(12,2) NOT NULL,
    status      varchar(16) NOT NULL,
    ordered_at  timestamp NOT NULL,
    updated_at  timestamp NOT NULL,
    details     super
);

INSERT INTO demo.customers
SELECT g,
       'Customer ' || g,
       CASE WHEN g % 7 = 0 THEN NULL ELSE 'customer' || g || '@example.com' END,
       (ARRAY['DE', 'FR', 'US', 'JP', 'BR'])[1 + g % 5],
       TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * INTERVAL '17 minutes',
       TIMESTAMP '2024-06-01 00:00:00' + g * INTERVAL '3 minutes'
FROM generate_series(1, 10000) g;

INSERT INTO demo.orders
SELECT g,
       1 + g % 10000,
       round((g % 997) * 1.37 + 0.99, 2),
       (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + g % 4],
       TIMESTAMP '2024-01-01 00:00:00' + g * INTERVAL '41 seconds',
       TIMESTAMP '2024-01-01 00:00:00' + g * INTERVAL '41 seconds' + (g % 3) * INTERVAL '1 day',
       ('{"items": ' || (1 + g % 5) || ', "gift": ' || (g % 11 = 0) || '}')::jsonb
FROM generate_series(1, 200000) g;

ANALYZE demo.customers;
ANALYZE demo.orders;
