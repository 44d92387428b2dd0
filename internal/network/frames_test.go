package network

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"testing"
	"time"
)

// vnetHdrLen is the virtio_net_hdr the TAP expects before every frame (IFF_VNET_HDR); all zero
// means no offloads.
const vnetHdrLen = 10

// guestPort plays the guest: it writes frames into a TAP's queues and reads what the TAP
// delivers on any of them.
type guestPort struct {
	t      *testing.T
	queues []*os.File
	frames chan []byte
	done   chan struct{}
}

func newGuestPort(t *testing.T, queues []*os.File) *guestPort {
	g := &guestPort{t: t, queues: queues, frames: make(chan []byte, 64), done: make(chan struct{})}
	for _, q := range queues {
		go func() {
			buf := make([]byte, 65536)
			for {
				n, err := q.Read(buf)
				if err != nil {
					return // closed at cleanup
				}
				if n <= vnetHdrLen {
					continue
				}
				select {
				case g.frames <- bytes.Clone(buf[vnetHdrLen:n]):
				case <-g.done:
					return
				}
			}
		}()
	}
	t.Cleanup(func() {
		close(g.done)
		for _, q := range queues {
			q.Close()
		}
	})
	return g
}

func (g *guestPort) send(frame []byte) {
	g.t.Helper()
	if _, err := g.queues[0].Write(append(make([]byte, vnetHdrLen), frame...)); err != nil {
		g.t.Fatalf("write frame into TAP: %v", err)
	}
}

// exchange writes frame into the TAP and returns the first frame accepted by match, failing the
// test if none comes. The frame is re-sent every half second, as a guest retries ARP and ping:
// a TAP drops what it should deliver until the kernel activates its qdisc, up to a second after
// the first queue is attached.
func (g *guestPort) exchange(what string, frame []byte, match func([]byte) bool) []byte {
	g.t.Helper()
	timeout := time.After(10 * time.Second)
	resend := time.NewTicker(500 * time.Millisecond)
	defer resend.Stop()
	g.send(frame)
	for {
		select {
		case f := <-g.frames:
			if match(f) {
				return f
			}
		case <-resend.C:
			g.send(frame)
		case <-timeout:
			g.t.Fatalf("no %s came back through the TAP", what)
			return nil
		}
	}
}

// arping sends an ARP request from the guest for target and returns the MAC that answered.
func (g *guestPort) arping(mac net.HardwareAddr, ip, target net.IP) net.HardwareAddr {
	g.t.Helper()
	reply := g.exchange("ARP reply from "+target.String(), arpRequest(mac, ip, target), func(f []byte) bool {
		return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0806 &&
			binary.BigEndian.Uint16(f[20:]) == 2 && net.IP(f[28:32]).Equal(target.To4()) &&
			net.IP(f[38:42]).Equal(ip.To4()) && bytes.Equal(f[0:6], mac)
	})
	return net.HardwareAddr(reply[22:28])
}

// ping sends one ICMP echo request from the guest and waits for the reply.
func (g *guestPort) ping(mac, dstMAC net.HardwareAddr, ip, target net.IP) {
	g.t.Helper()
	const id = 0xc0c0
	g.exchange("ICMP echo reply from "+target.String(), icmpEcho(mac, dstMAC, ip, target, id), func(f []byte) bool {
		return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0800 && f[23] == 1 &&
			net.IP(f[26:30]).Equal(target.To4()) && net.IP(f[30:34]).Equal(ip.To4()) &&
			f[34] == 0 && binary.BigEndian.Uint16(f[38:]) == id
	})
}

func arpRequest(mac net.HardwareAddr, ip, target net.IP) []byte {
	f := make([]byte, 0, 42)
	f = append(f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	f = append(f, mac...)
	f = binary.BigEndian.AppendUint16(f, 0x0806)
	f = append(f, 0, 1, 8, 0, 6, 4, 0, 1) // Ethernet, IPv4, sizes, request
	f = append(f, mac...)
	f = append(f, ip.To4()...)
	f = append(f, 0, 0, 0, 0, 0, 0)
	return append(f, target.To4()...)
}

func icmpEcho(mac, dstMAC net.HardwareAddr, ip, target net.IP, id uint16) []byte {
	icmp := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), 0, 1}
	icmp = append(icmp, []byte("cocoon-tap-test")...)
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))

	iph := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 1, 0, 0}
	binary.BigEndian.PutUint16(iph[2:], uint16(20+len(icmp)))
	iph = append(iph, ip.To4()...)
	iph = append(iph, target.To4()...)
	binary.BigEndian.PutUint16(iph[10:], checksum(iph))

	f := append(append([]byte{}, dstMAC...), mac...)
	f = binary.BigEndian.AppendUint16(f, 0x0800)
	return append(append(f, iph...), icmp...)
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
