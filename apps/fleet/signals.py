"""What fleet tells the apps above it, which it does not import."""

from django.dispatch import Signal

# A node was marked offline (its heartbeat stopped), inside the transaction that marked it:
# sent with `node` (the Node) and `reason` (a sentence). Serving marks what it held lost.
node_offline = Signal()
