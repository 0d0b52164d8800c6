"""The kernel a notebook runs in, and a watch on it: papermill's engine, made safe to wait on.

Three things can leave a run waiting for a reply that never comes:

- **a lost reply** (the hang of notebook 04's ``widgets.interact`` cell). nbclient imitates an
  ``Output`` widget on the client side and, while a cell runs, sends its ``comm_msg``\\ s on
  the *shell* channel, the very socket on which the cell's ``execute_reply`` is awaited.
  ``jupyter_client``'s ``Session.send`` writes on a blocking shadow of the asyncio socket;
  that drains the socket's edge-triggered ``ZMQ_FD`` without the re-check pyzmq's asyncio
  socket does after each send, so a reply that arrived just before stays unread until the
  cell times out (jupyter/nbclient#312; ipykernel 7.4 fixed the same race on the kernel's
  side). :class:`_OutputWidget` sends through the asyncio socket, which re-checks;
- **a stopped or frozen kernel**: it no longer answers its heartbeat;
- **a cell that runs too long** for its notebook's plan.

:func:`engine` registers papermill's nbclient engine with a client that sends widget messages
safely and watches every running cell each second: a kernel silent on its heartbeat, or idle
while the cell's reply is missing, for :data:`WATCHDOG_GRACE_S` fails the cell, as does its
timeout (:func:`cell_timeout`), with a message naming the cell (:class:`KernelStalled`).

Each run's IPC sockets live in a folder of its own (:func:`kernel_config`): jupyter_client's
default is ``kernel-ipc-1``... relative to the working directory, the same five names for
every run started in ``notebooks/``, which two kernels starting at once would share.
"""

from __future__ import annotations

import functools

# A kernel silent on its heartbeat, or idle while a cell's reply is missing, this long fails.
WATCHDOG_GRACE_S = 10.0
CELL_TIMEOUT_S = 3600  # a cell of the full profile, when the plan has no estimate
SMOKE_CELL_TIMEOUT_S = 600  # a cell of another profile, when the plan has no estimate
ENGINE = "workbench"  # the papermill engine :func:`engine` registers


class KernelStalled(RuntimeError):
    """A cell ran past its timeout, or the watchdog found its kernel stalled; the message
    names the cell (index and first line) and what happened."""


def cell_timeout(profile: str, estimate_s: float | None) -> int:
    """Seconds any one cell may run: three times the plan's estimate for the whole notebook,
    at least 120 s (smoke) or 600 s (full); without an estimate :data:`SMOKE_CELL_TIMEOUT_S`
    or :data:`CELL_TIMEOUT_S`."""
    full = profile == "full"
    if not estimate_s:
        return CELL_TIMEOUT_S if full else SMOKE_CELL_TIMEOUT_S
    return int(max(600 if full else 120, 3 * estimate_s))


def kernel_config(ipc_dir: str):
    """Kernels talk to papermill over IPC sockets (files) in ``ipc_dir``, not TCP ports.

    Two kernels starting at once (a notebook run beside JupyterLab, or two runs) can pick the
    same free TCP ports, and the kernel would warn that it "is running over TCP without
    encryption". ``ipc_dir`` is a folder of this run's own, short and absolute (a socket path
    holds at most 107 bytes).
    """
    from traitlets.config import Config

    config = Config()
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = f"{ipc_dir}/kernel"
    return config


@functools.cache
def engine() -> str:
    """Register papermill's nbclient engine with the watch described above; its name."""
    import asyncio
    from time import monotonic

    from jupyter_core.utils import run_sync
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from nbclient.jsonutil import json_clean
    from nbclient.output_widget import OutputWidget
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger

    class _OutputWidget(OutputWidget):
        """nbclient's stand-in for an Output widget, sending through the asyncio socket,
        which checks for waiting messages after each send (see the module's docstring)."""

        def _publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
            session = self.kernel_client.session
            content = json_clean(dict(data=data or {}, comm_id=self.comm_id, **keys))
            msg = session.msg(
                msg_type, content=content, parent=self.parent_header, metadata=metadata or {}
            )
            self.kernel_client.shell_channel.socket.send_multipart(session.serialize(msg))

    class _WatchedClient(PapermillNotebookClient):
        """Papermill's client with a watchdog: while a cell runs it checks every second that
        the kernel answers its heartbeat, and that no reply is missing once the kernel went
        idle; either for :data:`WATCHDOG_GRACE_S` fails the cell, as does its timeout."""

        output_widget = _OutputWidget

        def __init__(self, nb_man, km=None, **kw):
            super().__init__(nb_man, km=km, **kw)
            self.widget_registry["@jupyter-widgets/output"]["OutputModel"] = self.output_widget

        async def async_execute_cell(self, cell, cell_index, execution_count=None, **kw):
            self._idle_at, self._stalled = None, None
            try:
                return await super().async_execute_cell(cell, cell_index, execution_count, **kw)
            except (DeadKernelError, CellTimeoutError) as err:
                if isinstance(err, CellTimeoutError):
                    self._stalled = f"ran longer than {self.timeout} s, the limit for one cell"
                if not self._stalled:
                    raise
                self.nb_man.cell_exception(self.nb.cells[cell_index], cell_index=cell_index)
                first = next((s for s in cell.source.splitlines() if s.strip()), "")[:80]
                raise KernelStalled(f"cell {cell_index} ({first!r}) {self._stalled}") from None

        execute_cell = run_sync(async_execute_cell)

        async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
            await super()._async_poll_output_msg(parent_msg_id, cell, cell_index)
            self._idle_at = monotonic()  # the kernel said it is idle: the reply is due now

        async def _async_poll_kernel_alive(self):
            beat = monotonic()
            while True:
                await asyncio.sleep(1)
                try:
                    await self._async_check_alive()
                except DeadKernelError:
                    break  # nbclient reports the dead kernel
                now = monotonic()
                if self.kc.hb_channel.is_beating():
                    beat = now
                if now - beat > WATCHDOG_GRACE_S:
                    self.shutdown_kernel = "immediate"  # a stopped kernel cannot shut down
                    self._stalled = (
                        f"stalled: the kernel has not answered its heartbeat for {now - beat:.0f}"
                        " s (stopped or frozen)"
                    )
                    break
                if self._idle_at is not None and now - self._idle_at > WATCHDOG_GRACE_S:
                    self._stalled = (
                        "stalled: the kernel finished it and is idle, but its execute_reply "
                        f"did not arrive in {now - self._idle_at:.0f} s (a lost reply)"
                    )
                    break
            self.task_poll_for_reply.cancel()

    class _Engine(NBClientEngine):
        """Papermill's nbclient engine, running :class:`_WatchedClient`."""

        client = _WatchedClient

        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man,
            kernel_name,
            log_output=False,
            stdout_file=None,
            stderr_file=None,
            start_timeout=60,
            execution_timeout=None,
            **kwargs,
        ):
            kwargs.pop("input_path", None)
            client = cls.client(
                nb_man,
                timeout=execution_timeout,
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logger,
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
                **kwargs,
            )
            return client.execute()

    papermill_engines.register(ENGINE, _Engine)
    return ENGINE
