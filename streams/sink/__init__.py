"""The sink deployable: alerts and client snapshots from Kafka into PostgreSQL (store and migrations)."""
