// Package sslayout lays out a TCP socket table byte for byte as `ss` from
// iproute2 6.1 does (misc/ss.c: out, field_flush, render_calc_width, render).
//
// ss writes every field of every line into a buffer as a token, measures the
// longest token of each column, and renders the buffer at the end. Render
// reproduces that, quirks included: the header takes part in the
// measurement, the last token of the output is never measured, non-terminal
// output is still padded with trailing blanks, a terminal's spare width is
// spread over the columns, and, as ss's buffer is rendered (and emptied)
// whenever it holds 5 chunks of 1 MiB at the start of a line, very large
// tables are printed in batches whose widths only grow.
package sslayout

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// Columns chooses the columns, as ss does: State is left out when exactly
// one state is selected; Header false for -H.
type Columns struct{ State, Header bool }

// Row is one socket line's fields, already formatted (see format.go helpers).
type Row struct {
	State        string // "ESTAB", "LISTEN", ...
	RecvQ, SendQ uint32
	Local, Peer  string // address token WITHOUT the trailing ':' (e.g. "127.0.0.1", "[::1]", "*", "127.0.0.1%lo")
	LPort, PPort string // port token ("22", "ssh", "*")
	Ext          string // everything after the peer port, each item with its own leading space (" users:((...)) timer:(...)"), may contain "\n\t" for -i/-m without -O
}

type column struct {
	header, ldelim string
	right          bool
}

// ss's columns after Netid, which a TCP-only table never shows. The last one
// is always empty; it only ends the line.
var columns = [...]column{
	{"State", " ", false},
	{"Recv-Q", " ", false},
	{"Send-Q", " ", false},
	{"Local Address:", " ", true},
	{"Port", "", false},
	{"Peer Address:", " ", true},
	{"Port", "", false},
	{"Process", "", false},
	{"", "", false},
}

const (
	nCols   = len(columns)
	colExt  = nCols - 2
	colLast = nCols - 1
)

type line [nCols]string

// ss's output buffer: tokens of a 16-bit length and the bytes, aligned to 2,
// in chunks of 1 MiB less a 16-byte chunk header; rendered when a line
// starts with 5 chunks allocated.
const (
	chunkData = 1<<20 - 16
	chunksMax = 5
)

type renderer struct {
	w      *bufio.Writer
	on     [nCols]bool
	maxLen [nCols]int
	screen int
	lines  []line
	open   int // the column of the token still open (ss's current_field), or -1

	// The chunk accounting of ss's buffer, only to know when ss renders.
	chunks, used, tokLen int
	tokFirst             bool // the current token starts its chunk
}

// Render writes the whole table (header unless !c.Header) as ss 6.1 does.
// width <= 0 means stdout is not a terminal (compact output); > 0 is the
// terminal's column count (tty mode: widths spread to fill each screen line).
func Render(w io.Writer, c Columns, rows []Row, width int) error {
	t := NewTable(w, c, width)
	for i := range rows {
		t.Add(&rows[i])
	}
	return t.Close()
}

// Table is Render a row at a time: lines are printed as ss prints them, in
// batches of ss's buffer, the last at Close.
type Table struct{ r *renderer }

// NewTable starts a table (see Render for c and width).
func NewTable(w io.Writer, c Columns, width int) *Table {
	r := &renderer{w: bufio.NewWriterSize(w, 64<<10), screen: max(width, 0), open: -1}
	for i := range r.on {
		r.on[i] = i > 0 || c.State
	}
	if c.Header {
		var h line
		for i := range h {
			h[i] = columns[i].header
		}
		r.add(h, true)
	}
	return &Table{r}
}

// Add buffers a row.
func (t *Table) Add(row *Row) {
	t.r.add(line{row.State, queue(row.RecvQ), queue(row.SendQ),
		row.Local + ":", row.LPort, row.Peer + ":", row.PPort, row.Ext, ""}, false)
}

// Close prints what is buffered.
func (t *Table) Close() error {
	t.r.render()
	return t.r.w.Flush()
}

// queue is a queue length as ss prints it: "%-6d" of an int32.
func queue(n uint32) string {
	b := strconv.AppendInt(make([]byte, 0, 12), int64(int32(n)), 10)
	for len(b) < 6 {
		b = append(b, ' ')
	}
	return string(b)
}

// add buffers a line as ss does. The previous line's Ext token (still
// open after a socket line) and its empty last token are flushed, so
// measured, only now, and the buffer may be rendered in between. A header
// is flushed up to Ext; a socket line up to the peer port.
func (r *renderer) add(l line, header bool) {
	if r.open == colExt {
		r.flush(colExt, r.lines[len(r.lines)-1][colExt])
		r.open = colLast
	}
	if r.open == colLast {
		if r.chunks >= chunksMax {
			r.render()
		} else {
			r.flush(colLast, "")
		}
	}
	r.lines = append(r.lines, l)
	for i := range colExt {
		r.put(i, l[i])
		r.flush(i, l[i])
	}
	r.put(colExt, l[colExt])
	r.open = colExt
	if header {
		r.flush(colExt, l[colExt])
		r.open = colLast
	}
}

// put appends a token's text to the buffer (ss's out and buf_update): a
// token that does not fit moves whole to a new chunk.
func (r *renderer) put(col int, s string) {
	if !r.on[col] {
		return
	}
	if r.chunks == 0 {
		r.newChunk()
	}
	if s == "" {
		return
	}
	if len(s) >= chunkData-r.used && !r.tokFirst {
		r.newChunk()
		r.used += r.tokLen
	}
	r.used += len(s)
	r.tokLen += len(s)
}

// flush ends a token (ss's field_flush): it is measured, and the next token
// starts at the next even offset, in a new chunk if its length does not fit.
func (r *renderer) flush(col int, s string) {
	if !r.on[col] {
		return
	}
	r.maxLen[col] = max(r.maxLen[col], len(s))
	pad := r.tokLen % 2
	r.tokLen = 0
	if chunkData-r.used-pad < 2 {
		r.used += pad
		r.newChunk()
		return
	}
	r.used += pad + 2
	r.tokFirst = false
}

func (r *renderer) newChunk() {
	r.chunks++
	r.used, r.tokFirst = 2, true
}

// render prints the buffered lines (ss's render_calc_width and render) and
// empties the buffer; the measured lengths stay.
func (r *renderer) render() {
	if len(r.lines) == 0 {
		return
	}
	width := r.widths()
	for _, l := range r.lines {
		started := false
		for i, tok := range l {
			if !r.on[i] {
				continue
			}
			col, printed := columns[i], 0
			if started {
				r.w.WriteString(col.ldelim)
				printed = len(col.ldelim)
			}
			started = true
			if width[i] > 0 && col.right {
				printed += r.spaces(width[i] - len(tok) - printed)
			}
			r.w.WriteString(tok)
			printed += len(tok)
			if width[i] > 0 && !col.right {
				r.spaces(width[i] - printed)
			}
		}
		r.w.WriteByte('\n')
	}
	r.lines = r.lines[:0]
	r.chunks, r.used, r.tokLen, r.open = 0, 0, 0, -1
}

func (r *renderer) spaces(n int) int {
	if n <= 0 {
		return 0
	}
	r.w.WriteString(strings.Repeat(" ", n))
	return n
}

// widths is ss's render_calc_width.
func (r *renderer) widths() (width [nCols]int) {
	first := true
	for i, col := range columns {
		if !r.on[i] {
			continue
		}
		width[i] = r.maxLen[i]
		if !first && width[i] > 0 {
			width[i] += len(col.ldelim)
		}
		if r.screen > 0 {
			width[i] = min(width[i], r.screen)
		}
		if width[i] > 0 {
			first = false
		}
	}
	if r.screen == 0 {
		return width
	}
	// Fill screen lines: the columns that fit on one get its spare width,
	// evenly, the remainder one by one from the right. A column that does
	// not fit starts the next screen line (the terminal wraps; ss prints no
	// newline).
	length, n, eol := 0, 0, -1
	for c := 0; c < nCols; c++ {
		if width[c] == 0 {
			continue
		}
		n++
		length += width[c]
		last := true
		for _, w := range width[c+1:] {
			if w > 0 {
				last = false
				break
			}
		}
		if !last && length < r.screen {
			continue
		}
		if length != r.screen {
			if length > r.screen {
				length -= width[c]
				c--
				n--
			}
			pad := r.screen - length
			spacing, rem := pad/n, pad%n
			for t := c; t > eol; t-- {
				if width[t] == 0 {
					continue
				}
				width[t] += spacing
				if rem > 0 {
					width[t]++
					rem--
				}
			}
		}
		eol, length, n = c, 0, 0
	}
	return width
}
