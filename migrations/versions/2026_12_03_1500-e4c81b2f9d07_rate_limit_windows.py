"""An API key's rate window as one row of per-step counts, taken by one function call per batch.

Replaces the slots of 3c1f9a7e5b20 (a row per request a window may hold, as many rows as
RATE_LIMIT_PER_MINUTE): a key now has one row whatever its limit, a ring of counts per step of
the window (a sixtieth of it, one second of Notify's minute), and ``rate_limit_take`` decides a
batch of keys in one round trip, each key under its row lock (fastapi1.limits.postgres_store).
The slots hold only the last minute's requests: dropped, not carried over.

Revision ID: e4c81b2f9d07
Revises: 7a4e2d9c1b36
Create Date: 2026-12-03 15:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "e4c81b2f9d07"
down_revision: str | None = "7a4e2d9c1b36"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Takes up to wanted[i] requests of key keys[i], in the order given (callers sort the keys, so
# two takes lock rows in one order and never deadlock each other; pruning skips locked rows).
# Each key: its row locked FOR UPDATE (made first if it has none), the clock read once the lock
# is held (time spent waiting for it is not counted in the window), its live counts summed,
# what fits granted and added to the current step. In a VOLATILE function each statement reads
# a fresh snapshot: once the lock is held, the row read is the one the last committed take
# wrote, so no request is counted twice or missed, whichever process took before. The ring has
# ``ring`` positions; position ``step % ring + 1`` holds step ``step``; a position holding an
# older step is reused (a step ahead of the clock, after the database's clock stepped back, is
# kept and added to); a row of another ring size starts again empty.
# Returns, per key: granted, the ring as it is now, the current step and the clock (epoch s),
# from which the caller computes when a refused key has room again.
TAKE = """
CREATE FUNCTION rate_limit_take(
    keys uuid[], wanted integer[], lim integer, width_s double precision, ring integer, offset_s double precision
) RETURNS TABLE (
    key_id uuid, granted integer, steps bigint[], counts integer[], now_step bigint, now_epoch double precision
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    i integer;
    used integer;
    pos integer;
BEGIN
    FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP
        key_id := keys[i];
        LOOP  -- until the row is read locked (a row deleted between its insert and its read is made again)
            SELECT w.steps, w.counts INTO steps, counts
            FROM rate_limit_windows AS w WHERE w.api_key_id = key_id FOR UPDATE;
            EXIT WHEN FOUND;
            INSERT INTO rate_limit_windows (api_key_id, steps, counts)
            VALUES (key_id, array_fill(-1::bigint, ARRAY[ring]), array_fill(0, ARRAY[ring]))
            ON CONFLICT DO NOTHING;
        END LOOP;
        IF coalesce(array_length(steps, 1), 0) <> ring THEN
            steps := array_fill(-1::bigint, ARRAY[ring]);
            counts := array_fill(0, ARRAY[ring]);
        END IF;
        now_epoch := extract(epoch FROM clock_timestamp()) + offset_s;
        now_step := floor(now_epoch / width_s)::bigint;
        pos := (now_step % ring)::integer + 1;
        SELECT coalesce(sum(u.n), 0) INTO used FROM unnest(steps, counts) AS u(s, n) WHERE u.s > now_step - ring;
        granted := least(wanted[i], greatest(lim - used, 0));
        IF granted > 0 THEN
            IF steps[pos] < now_step THEN
                steps[pos] := now_step;
                counts[pos] := 0;
            END IF;
            counts[pos] := counts[pos] + granted;
            UPDATE rate_limit_windows AS w SET steps = rate_limit_take.steps, counts = rate_limit_take.counts
            WHERE w.api_key_id = key_id;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    """Apply this revision."""
    op.drop_table("rate_limit_slots")
    op.create_table(
        "rate_limit_windows",
        sa.Column("api_key_id", sa.Uuid(), nullable=False),
        sa.Column("steps", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("counts", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.PrimaryKeyConstraint("api_key_id", name=op.f("pk_rate_limit_windows")),
        prefixes=["UNLOGGED"],
        postgresql_with={"fillfactor": 50},
    )
    op.execute(TAKE)


def downgrade() -> None:
    """Revert this revision."""
    op.execute("DROP FUNCTION rate_limit_take(uuid[], integer[], integer, double precision, integer, double precision)")
    op.drop_table("rate_limit_windows")
    op.create_table(
        "rate_limit_slots",
        sa.Column("api_key_id", sa.Uuid(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), server_default=sa.text("'-infinity'"), nullable=False),
        sa.PrimaryKeyConstraint("api_key_id", "slot", name=op.f("pk_rate_limit_slots")),
        prefixes=["UNLOGGED"],
        postgresql_with={"fillfactor": 50},
    )
