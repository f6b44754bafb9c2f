package events

import "time"

// Record is what the tracer's Read returns, one of four kinds told apart
// by Type: a state transition, a packet event (a retransmit, reset or
// error of a socket), a count of records lost, or a wake-up. It is read
// in place, record after record: the field of its Type is the one set.
type Record struct {
	Type RecordType
	// Transition: the kernel's record, for a TransitionRecord or a
	// PacketRecord (its Kind then says which packet event).
	Transition
	// Loss: for a LossRecord.
	Loss Loss
}

// RecordType is which kind of record a Record holds.
type RecordType uint8

// The kinds of Record.
const (
	// TransitionRecord: Transition is a state change of a socket.
	TransitionRecord RecordType = iota
	// PacketRecord: Transition is a retransmit, reset or error of a
	// socket (asked for with Options.Kinds); Old and New are both the
	// socket's state at the time.
	PacketRecord
	// LossRecord: Loss counts records the kernel could not send.
	LossRecord
	// WakeRecord: Wake was called; neither Transition nor Loss is set.
	WakeRecord
)

// typeOf is the type of the record the kernel sent as kind k.
func typeOf(k Kind) RecordType {
	if k.IsPacket() {
		return PacketRecord
	}
	return TransitionRecord
}

// IsPacket reports whether k is a packet event (a retransmit, reset or
// error) rather than a state transition.
func (k Kind) IsPacket() bool { return k != KindTransition }

// Loss counts records the kernel could not send, noticed at At.
type Loss struct {
	At time.Time
	// Lost: this many transitions that passed the kernel filter were
	// dropped because the ring buffer was full; they happened before the
	// next transition read.
	Lost uint64
	// Skipped: the kernel did not run the program for this many state
	// changes, of any socket (before any filter): it was already running
	// on that CPU when a softirq made another (Linux 5.12+ counts these).
	Skipped uint64
	// LostOther: this many retransmit, reset or error records (asked for
	// with Options.Kinds) were dropped, ring buffer full.
	LostOther uint64
}
