"""What our record loop needs of Faust beyond its consumer (that is app/kafka_transport.py).

Flow control resumed while it is already running clears nothing. Faust's stream queues are
cleared whenever `app.flow_control.resume()` is called (mode's FlowControlQueue, clear_on_resume),
which is meant for records fetched before a rebalance suspended the flow. But recovery resumes the
flow early, then resumes the stream partitions, seeks them and calls `resume()` again
(`Recovery.on_recovery_completed`): records fetched during the seek, already past Faust's read
offset, were dropped from the agents' queues and never fetched again (the long chaos run lost the
first 8 items of a master partition that way). The app's flow control is a `FlowControl`
(app/faust_app.py, `App.flow_control`), not a patch of mode's class.
"""
from __future__ import annotations

import weakref

from faust import streams as faust_streams
from mode.utils.queues import FlowControlEvent


class FlowControl(FlowControlEvent):
    """mode's flow control of the app's queues, except that a resume while running clears nothing."""

    def resume(self) -> None:
        if self.is_active():
            return  # already flowing: the queues hold records of the current generation, keep them
        super().resume()


def set_current_event(event) -> None:
    """Make `event` the one Faust's tables see as current (`faust.current_event()`): a table write
    goes to its partition. Faust's stream iterator sets this for every record it yields; our own
    record loop (agents/streams.py, `delivered`) does not iterate the stream, so it sets it here."""
    faust_streams._current_event.set(weakref.ref(event))
