#!/usr/bin/env python3
"""Boot one guest under QEMU and drive its serial console; used by smoke.sh.

usage: smoke_driver.py WORKDIR SCENARIO -- QEMU ARGS...
WORKDIR holds console.sock / qmp.sock (QEMU creates them); SCENARIO is tiny, debian or cloud.
Prints timings (seconds since QEMU start) and exits non-zero on any failed expectation.
"""
import json
import os
import re
import socket
import subprocess
import sys
import time

work, scenario = sys.argv[1], sys.argv[2]
qemu_args = sys.argv[sys.argv.index("--") + 1:]
hostname = os.environ.get("SMOKE_HOSTNAME", "smoke")
t0 = time.monotonic()
log = open(os.path.join(work, "console.log"), "wb")
proc = subprocess.Popen(qemu_args, stdin=subprocess.DEVNULL,
                        stdout=open(os.path.join(work, "qemu.out"), "wb"), stderr=subprocess.STDOUT)


def elapsed():
    return time.monotonic() - t0


def fail(msg):
    print(f"FAIL [{elapsed():.1f}s] {msg}", flush=True)
    tail = open(os.path.join(work, "console.log"), "rb").read()[-3000:]
    print("---- console tail ----\n" + tail.decode(errors="replace"), flush=True)
    if proc.poll() is None:
        proc.kill()
    sys.exit(1)


def connect(path):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"qemu exited early with {proc.returncode}: " +
                 open(os.path.join(work, "qemu.out")).read())
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            return s
        except OSError:
            time.sleep(0.05)
    fail(f"cannot connect to {path}")


con = connect(os.path.join(work, "console.sock"))
buf = b""


def expect(pattern, timeout):
    """Wait until pattern (a regex over bytes received since the last match) shows up."""
    global buf
    rx = re.compile(pattern.encode())
    deadline = time.monotonic() + timeout
    while True:
        m = rx.search(buf)
        if m:
            buf = buf[m.end():]
            return m
        left = deadline - time.monotonic()
        if left <= 0:
            fail(f"timed out after {timeout}s waiting for {pattern!r}")
        con.settimeout(min(left, 1.0))
        try:
            data = con.recv(65536)
        except socket.timeout:
            continue
        if not data:
            fail("console closed")
        log.write(data)
        log.flush()
        buf += data


def send(text):
    con.sendall(text.encode())


def mark(what):
    print(f"{what}: {elapsed():.1f}s", flush=True)


def run(cmd, prompt, timeout=30):
    """Run cmd in the console shell and return its output (between echo and next prompt)."""
    send(cmd + "\n")
    m = expect(r"(?s)__BEGIN__\r?\n(.*?)__END__", timeout)
    expect(prompt, timeout)
    return m.group(1).decode(errors="replace")


def shell(cmd, prompt):
    return run(f"echo __BE''GIN__; {cmd}; echo __E''ND__", prompt)


def login(user, password, prompt):
    expect(r"login: ", 300)
    mark("login prompt")
    send(user + "\n")
    expect(r"Password: ", 30)
    send(password + "\n")
    expect(prompt, 60)
    mark("logged in")


if scenario == "tiny":
    m = expect(r"COCOON-READY hostname=(\S+) ips=(\S+)\r?\n", 120)
    mark("ready line")
    print(m.group(0).decode(), flush=True)
    if m.group(1).decode() != hostname:
        fail(f"hostname {m.group(1)!r}, want {hostname!r}")
    want_ips = os.environ.get("SMOKE_IPS")
    if want_ips and m.group(2).decode() != want_ips:
        fail(f"ips {m.group(2)!r}, want {want_ips!r}")
    send("\n")
    expect(r"tiny# ", 30)
    out = shell("hostname; grep -c cocoon /proc/mounts; grep ^overlay /proc/mounts; ip route | grep default; cat /etc/resolv.conf; "
                "(timeout 1 cocoon-counter | tail -n1)", r"tiny# ")
    print(out.strip(), flush=True)
    if hostname not in out or "COUNTER" not in out:
        fail("unexpected shell output")
elif scenario == "debian":
    login("root", "cocoon", r"root@\S+:~# ")
    out = shell("hostname; ip -4 -o addr show; ip route | grep default; cat /etc/resolv.conf; "
                "findmnt -n -o SOURCE,FSTYPE /; systemctl is-system-running --wait; "
                "wc -c </etc/machine-id; systemd-analyze; systemd-analyze blame | head -n 8", r"root@\S+:~# ")
    print(out.strip(), flush=True)
    if hostname not in out or "overlay" not in out:
        fail("unexpected shell output")
elif scenario == "cloud":
    # getty starts before cloud-init's config stage has set the password: wait for it.
    expect(r"login: ", 300)
    mark("login prompt")
    expect(r"Cloud-init v\. \S+ finished", 300)
    mark("cloud-init finished")
    send("\n")
    login("root", "cocoon", r"root@\S+:~# ")
    out = shell("hostname; cloud-init status --wait; ip -4 -o addr show; locale; "
                "systemctl is-system-running --wait; findmnt -n -o SOURCE,FSTYPE /", r"root@\S+:~# ")
    print(out.strip(), flush=True)
    if hostname not in out or "status: done" not in out:
        fail("unexpected shell output")
else:
    fail(f"unknown scenario {scenario}")

# ACPI power button through QMP; the guest must power itself off and QEMU exit.
qmp = connect(os.path.join(work, "qmp.sock"))
f = qmp.makefile("rw")
f.readline()
for cmd in ({"execute": "qmp_capabilities"}, {"execute": "system_powerdown"}):
    f.write(json.dumps(cmd) + "\n")
    f.flush()
    f.readline()
t_pd = time.monotonic()
mark("system_powerdown sent")
con.settimeout(1.0)
while proc.poll() is None:
    if time.monotonic() - t_pd > 120:
        fail("guest did not power off within 120s of system_powerdown")
    try:
        data = con.recv(65536)
        if data:
            log.write(data)
    except OSError:
        time.sleep(0.2)
log.flush()
print(f"powered off {time.monotonic() - t_pd:.1f}s after system_powerdown (qemu rc={proc.returncode})")
print("PASS", flush=True)
