package mqtt

import (
	"bytes"
	"testing"
)

// benchPublish is a typical telemetry message: a short topic, 64 bytes.
func benchPublish(qos byte) Publish {
	p := Publish{QoS: qos, Topic: []byte("sensors/building-7/floor-3/t1"), Payload: bytes.Repeat([]byte("v"), 64)}
	if qos > 0 {
		p.PacketID = 4242
	}
	return p
}

func BenchmarkDecodePublish(b *testing.B) {
	for _, bc := range []struct {
		name string
		qos  byte
	}{{"qos0", 0}, {"qos1", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			in := benchPublish(bc.qos)
			raw := in.AppendTo(nil)
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			var p Publish
			for b.Loop() {
				h, err := ParseFixedHeader(raw, 0)
				if err != nil {
					b.Fatal(err)
				}
				if err := DecodePublish(h.Flags, raw[h.Size:], &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodePublish(b *testing.B) {
	p := benchPublish(1)
	dst := make([]byte, 0, p.Size())
	b.ReportAllocs()
	b.SetBytes(int64(p.Size()))
	for b.Loop() {
		dst = p.AppendTo(dst[:0])
	}
}

func BenchmarkReaderNext(b *testing.B) {
	p := benchPublish(0)
	p.Topic = []byte("t/1")
	raw := p.AppendTo(nil)
	r := NewReader(&cycleReader{pattern: raw}, 0)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeSubscribe(b *testing.B) {
	raw := AppendSubscribe(nil, 1, []Subscription{{Filter: []byte("sensors/+/t1"), QoS: 1}, {Filter: []byte("alerts/#"), QoS: 2}})
	h, err := ParseFixedHeader(raw, 0)
	if err != nil {
		b.Fatal(err)
	}
	subs := make([]Subscription, 0, 4)
	b.ReportAllocs()
	for b.Loop() {
		if _, subs, err = DecodeSubscribe(raw[h.Size:], subs[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
