"""What serving asks of the apps above it, which it does not import."""

from django.dispatch import Signal

# A load of a pinned version (pinned=True, or its serving profile pins it) that could evict was
# refused because no device had room, even by eviction. Sent after the load's own transaction rolled
# back, with sender=Placement, `need_on` (per device id where it would fit were the memory others
# hold there let go: the bytes it needs there) and `wanted_by` (what wants the room, a phrase such as
# "a pinned load of llama v2"). A receiver may make room there in its own writes (jobs asks a
# running fine-tune to checkpoint and yield) and answers with a sentence the refusal appends for the
# caller, who tries the load again, or None. The load itself stays refused.
room_wanted = Signal()
