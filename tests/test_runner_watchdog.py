"""The runner's watchdog: a stopped kernel, or a cell whose reply never comes, fails within
seconds with a message naming the notebook and the cell, not after the cell's timeout; and
nbclient's Output-widget stand-in no longer strands the reply it is waiting for."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import nbformat
import pytest

from workbench.core import paths
from workbench.run import kernel, notebooks

DEADLINE_S = 45  # generous: the watchdog needs WATCHDOG_GRACE_S (10 s) plus a second or two


@pytest.fixture
def notebook(tmp_path, monkeypatch):
    """Write ``09-watch.ipynb`` with the given code cells into a notebooks folder of its own."""
    folder = tmp_path / "notebooks"
    (folder / "params").mkdir(parents=True)
    (folder / "params" / "smoke.yaml").write_text("")
    monkeypatch.setattr(paths, "notebooks_dir", lambda: folder)
    monkeypatch.setenv("WORKBENCH_REPORTS", str(tmp_path / "reports"))

    def write(*sources: str) -> str:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
        nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
        nbformat.write(nb, folder / "09-watch.ipynb")
        return "09-watch"

    return write


def _execute(name, tmp_path):
    start = time.monotonic()
    with pytest.raises(notebooks.NotebookFailed) as err:
        notebooks.execute(name, profile="smoke", out_dir=tmp_path / "out", progress=False)
    return str(err.value), time.monotonic() - start


@pytest.mark.slow
def test_a_stopped_kernel_fails_fast_naming_the_cell(notebook, tmp_path):
    pid_file = tmp_path / "kernel.pid"
    name = notebook(
        f"import os, pathlib\npathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))",
        "import time\ntime.sleep(60)  # stopped in here",
    )
    stopped = []

    def stop_the_kernel():
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
        time.sleep(2)  # into the sleeping cell
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)

    stopper = threading.Thread(target=stop_the_kernel, daemon=True)
    stopper.start()
    try:
        message, seconds = _execute(name, tmp_path)
    finally:
        stopper.join(timeout=5)
        for pid in stopped:  # the runner shuts the kernel down; make sure of it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert stopped, "the kernel never wrote its pid"
    assert seconds < DEADLINE_S + 15, message  # + the kernel's shutdown
    assert message.startswith("Notebook 09-watch: cell 1 ('import time')"), message
    assert "heartbeat" in message and "Executed copy so far" in message


@pytest.mark.slow
def test_an_idle_kernel_whose_reply_is_lost_fails_fast(notebook, tmp_path, monkeypatch):
    """A client that never sees one cell's execute_reply (as in the widget hang) while the
    kernel reports the cell done and idle."""
    from jupyter_client.asynchronous.client import AsyncKernelClient
    from jupyter_client.channels import AsyncZMQSocketChannel

    lost: set[str] = set()
    execute, get_msg = AsyncKernelClient.execute, AsyncZMQSocketChannel.get_msg

    def remembering_execute(self, code, *args, **kwargs):
        msg_id = execute(self, code, *args, **kwargs)
        if "lose my reply" in code:
            lost.add(msg_id)
        return msg_id

    async def losing_get_msg(self, timeout=None):
        while True:
            msg = await get_msg(self, timeout)
            if not (msg["msg_type"] == "execute_reply" and msg["parent_header"]["msg_id"] in lost):
                return msg

    monkeypatch.setattr(AsyncKernelClient, "execute", remembering_execute)
    monkeypatch.setattr(AsyncZMQSocketChannel, "get_msg", losing_get_msg)
    name = notebook("x = 1", "\n# lose my reply\ny = x + 1", "z = 3")
    message, seconds = _execute(name, tmp_path)
    assert lost, "the reply to drop was never requested"
    assert seconds < DEADLINE_S, message  # the cell's own limit is 600 s
    assert message.startswith("Notebook 09-watch: cell 1 ('# lose my reply')"), message
    assert "execute_reply" in message and "lost reply" in message
    executed = nbformat.read(tmp_path / "out" / "09-watch.ipynb", as_version=4)
    assert executed.cells[1].metadata.papermill["status"] == "failed"
    assert executed.cells[2].metadata.papermill["status"] == "pending"


def test_cell_timeouts_follow_the_plan():
    assert kernel.cell_timeout("smoke", 33) == 120  # the floor
    assert kernel.cell_timeout("smoke", 85) == 255  # 3x the notebook's estimate
    assert kernel.cell_timeout("smoke", None) == 600
    assert kernel.cell_timeout("full", 100) == 600
    assert kernel.cell_timeout("full", 1500) == 4500
    assert kernel.cell_timeout("full", None) == kernel.CELL_TIMEOUT_S


def test_the_output_widget_send_leaves_a_waiting_reply_readable():
    """The mechanism of the widget hang, without a kernel: a reply reaches the client's shell
    socket while its asyncio poll waits, and before the event loop looks, the Output widget
    stand-in sends a comm message on that socket. Through ``Session.send`` (a blocking shadow
    of the socket) that send drains the edge-triggered ``ZMQ_FD`` and the poll never wakes;
    the runner's widget sends through the asyncio socket, which looks again."""
    import zmq
    import zmq.asyncio
    from jupyter_client.channels import AsyncZMQSocketChannel
    from jupyter_client.session import Session
    from papermill.engines import papermill_engines

    ours = papermill_engines.get_engine(kernel.engine()).client.output_widget

    async def reply_seen(widget_class) -> bool:
        context = zmq.asyncio.Context()
        kernel, client = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
        port = kernel.bind_to_random_port("tcp://127.0.0.1")
        client.identity = b"client"
        client.connect(f"tcp://127.0.0.1:{port}")
        try:
            try:
                await asyncio.wait_for(client.send(b"hello"), 10)
                await asyncio.wait_for(kernel.recv_multipart(), 10)  # connected
            except TimeoutError:
                pytest.fail("the two ZeroMQ sockets on 127.0.0.1 did not connect within 10 s")
            poll = asyncio.ensure_future(client.poll(5000))  # awaiting the execute_reply
            await asyncio.sleep(0.05)
            await kernel.send_multipart([b"client", b"execute_reply"])
            time.sleep(0.2)  # the reply arrives; the event loop has not looked yet
            session = Session()
            shell = AsyncZMQSocketChannel(client, session)
            kc = type("Client", (), {"session": session, "shell_channel": shell})()
            widget = widget_class("c0ffee", {"outputs": []}, kc, executor=None)
            widget.parent_header = {}
            widget.sync_state()  # the comm message nbclient sends while the cell runs
            try:
                return bool(await asyncio.wait_for(poll, 2))
            except TimeoutError:
                return False
        finally:
            client.close(linger=0)
            kernel.close(linger=0)
            context.term()

    assert asyncio.run(reply_seen(ours))
