package cluster

import (
	"fmt"
	"net"
	"strconv"
)

// Node metadata rides memberlist's alive messages (at most
// memberlist.MetaMaxSize = 512 bytes) and tells the other nodes how to reach
// this one's peer link and which release it runs:
//
//	meta = format(1)=1 | peerAddr(lp) | version(lp) | [fields of later formats]
//
// lp is a varint length prefix. Later releases may append fields; a decoder
// ignores what follows the fields it knows, so a rolling upgrade keeps
// nodes of both releases in one cluster. A member whose metadata does not
// decode is not a pubsub node and is refused (see delegate.NotifyAlive).
const metaFormat1 = 1

const (
	maxPeerAddrLen = 255
	maxVersionLen  = 64
)

// nodeMeta is the decoded metadata of a member.
type nodeMeta struct {
	// peerAddr is the peer-link address, host:port. An empty host means
	// "the IP this member gossips from", so a node bound to 0.0.0.0 does not
	// have to guess which of its addresses the others can reach.
	peerAddr string
	version  string
}

func (m nodeMeta) appendTo(dst []byte) []byte {
	dst = append(dst, metaFormat1)
	dst = appendString(dst, m.peerAddr)
	return appendString(dst, m.version)
}

func decodeMeta(b []byte) (nodeMeta, error) {
	d := decoder{buf: b}
	if format := d.byte(); d.err == nil && format != metaFormat1 {
		return nodeMeta{}, fmt.Errorf("%w: metadata format %d", errMalformed, format)
	}
	m := nodeMeta{
		peerAddr: d.string(maxPeerAddrLen),
		version:  d.string(maxVersionLen),
	}
	if d.err != nil {
		return nodeMeta{}, d.err
	}
	if m.peerAddr != "" {
		if _, port, err := net.SplitHostPort(m.peerAddr); err != nil || !validPort(port) {
			return nodeMeta{}, fmt.Errorf("%w: peer address", errMalformed)
		}
	}
	return m, nil
}

// validPort reports whether port is a decimal TCP port other than 0.
func validPort(port string) bool {
	p, err := strconv.ParseUint(port, 10, 16)
	return err == nil && p != 0
}

// resolvePeerAddr fills an empty host of a metadata peer address with the
// IP the member gossips from.
func resolvePeerAddr(peerAddr string, gossipIP net.IP) string {
	host, port, err := net.SplitHostPort(peerAddr)
	if err != nil {
		return ""
	}
	if host == "" && gossipIP != nil {
		host = gossipIP.String()
	}
	return net.JoinHostPort(host, port)
}
