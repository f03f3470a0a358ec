"""The dev SMTP sink keeps each mail's decoded text beside its .eml; `taskdeck mail` lists and prints them."""
from __future__ import annotations

import email.message
from pathlib import Path

import aiosmtplib
import pytest

from launcher.cli import main
from launcher.devstack import SmtpSink

LINK = "http://127.0.0.1:8080/verify-email?token=" + "A1b2C3d4-_" * 8  # longer than a quoted-printable line


async def send(sink: SmtpSink, to: str, subject: str, text: str) -> None:
    message = email.message.EmailMessage()
    message["From"], message["To"], message["Subject"] = "Taskdeck <no-reply@taskdeck.localhost>", to, subject
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(f"<p><a href='{LINK}'>Confirm</a></p>", subtype="html")
    await aiosmtplib.send(message, hostname="127.0.0.1", port=sink.port)


@pytest.fixture
async def sink(tmp_path: Path):
    sink = SmtpSink(tmp_path / "var" / "mail")
    sink.start()
    yield sink
    sink.stop()


async def test_each_mail_has_its_text_beside_it_with_the_link_on_one_line(sink):
    await send(sink, "ada@example.com", "Confirm your email", f"Hello Ada,\n\nopen {LINK} to confirm.\n")
    [eml] = sorted(sink.mail_dir.glob("*.eml"))
    assert f"{LINK}" not in eml.read_text()  # the raw message splits it (quoted-printable soft breaks)
    text = eml.with_suffix(".txt").read_text()
    assert text.startswith("From: Taskdeck <no-reply@taskdeck.localhost>\nTo: ada@example.com\n")
    assert "Subject: Confirm your email\n" in text and f"open {LINK} to confirm." in text
    assert not list(sink.mail_dir.glob(".*"))  # no temporary file left behind
    sink.clear()
    assert not list(sink.mail_dir.iterdir())


async def test_taskdeck_mail_lists_and_prints_the_newest(sink, capsys):
    var = str(sink.mail_dir.parent)
    await send(sink, "ada@example.com", "First", f"first {LINK}\n")
    await send(sink, "bob@example.com", "Second", "second mail\n")
    main(["mail", "--var", var])
    listing = capsys.readouterr().out.splitlines()
    assert [line.split("  ", 1)[1] for line in listing] == ["ada@example.com  First", "bob@example.com  Second"]
    main(["mail", "--var", var, "--last"])
    assert "Subject: Second" in capsys.readouterr().out
    main(["mail", "--var", var, "--last", "--to", "ADA@example.com"])
    assert f"first {LINK}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["mail", "--var", var, "--to", "carol@example.com"])
    assert exit_info.value.code == 1 and "no mail to carol@example.com" in capsys.readouterr().err


async def test_taskdeck_mail_waits_for_the_mail(sink, capsys):
    """--wait: the command returns as soon as a matching mail arrives (the worker sends a moment later)."""
    import asyncio

    var = str(sink.mail_dir.parent)
    waiting = asyncio.get_running_loop().run_in_executor(
        None, main, ["mail", "--var", var, "--last", "--to", "late@example.com", "--wait", "30"])
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await send(sink, "late@example.com", "Arrived", "here now\n")
    await asyncio.wait_for(waiting, 30)
    assert "Subject: Arrived" in capsys.readouterr().out
