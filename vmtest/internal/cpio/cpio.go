// Package cpio writes "newc" (SVR4, no CRC) cpio archives, the format the
// Linux kernel unpacks as an initramfs.
package cpio

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// File modes (the cpio header uses the stat(2) st_mode bits).
const (
	TypeDir  = 0o040000
	TypeReg  = 0o100000
	TypeLink = 0o120000
	TypeChar = 0o020000
)

const trailer = "TRAILER!!!"

// Writer writes an archive. Parent directories are not made implicitly:
// add them first (Dir), as the kernel creates entries in order.
type Writer struct {
	w     *bufio.Writer
	off   int64
	ino   uint32
	err   error
	seen  map[string]bool
	mtime uint32
}

// NewWriter returns a Writer to w. Every entry gets mtime 0, so the same
// inputs give the same archive.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 1<<20), ino: 1, seen: map[string]bool{}}
}

type header struct {
	name         string
	mode         uint32
	size         int64
	nlink        uint32
	rdevMajor    uint32
	rdevMinor    uint32
	uid, gid     uint32
	devMajor     uint32
	devMinor     uint32
	inode, mtime uint32
}

func (w *Writer) header(h header) error {
	if w.err != nil {
		return w.err
	}
	if h.size > 0xffffffff {
		return fmt.Errorf("cpio: %s: %d bytes is too large for newc", h.name, h.size)
	}
	name := h.name + "\x00"
	_, err := fmt.Fprintf(w.w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		h.inode, h.mode, h.uid, h.gid, h.nlink, h.mtime, uint32(h.size),
		h.devMajor, h.devMinor, h.rdevMajor, h.rdevMinor, len(name), 0)
	if err != nil {
		return w.fail(err)
	}
	w.off += 110
	if _, err := io.WriteString(w.w, name); err != nil {
		return w.fail(err)
	}
	w.off += int64(len(name))
	return w.pad()
}

func (w *Writer) pad() error {
	if n := (4 - w.off%4) % 4; n > 0 {
		if _, err := w.w.Write(make([]byte, n)); err != nil {
			return w.fail(err)
		}
		w.off += n
	}
	return nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

func (w *Writer) entry(name string, mode uint32, size int64, major, minor uint32) error {
	name = clean(name)
	if name == "" || name == trailer {
		return w.fail(fmt.Errorf("cpio: bad name %q", name))
	}
	if w.seen[name] {
		return w.fail(fmt.Errorf("cpio: %s added twice", name))
	}
	w.seen[name] = true
	nlink := uint32(1)
	if mode&0o170000 == TypeDir {
		nlink = 2
	}
	h := header{name: name, mode: mode, size: size, nlink: nlink, rdevMajor: major, rdevMinor: minor, inode: w.ino, mtime: w.mtime}
	w.ino++
	return w.header(h)
}

// clean makes an archive path: relative, no "." or ".." parts.
func clean(name string) string {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	return name
}

// Dir adds a directory.
func (w *Writer) Dir(name string, perm uint32) error {
	return w.entry(name, TypeDir|perm&0o7777, 0, 0, 0)
}

// MkdirAll adds name and each of its parents not added yet.
func (w *Writer) MkdirAll(name string, perm uint32) error {
	name = clean(name)
	if name == "" || w.seen[name] {
		return w.err
	}
	if dir := path.Dir(name); dir != "." {
		if err := w.MkdirAll(dir, perm); err != nil {
			return err
		}
	}
	return w.Dir(name, perm)
}

// CharDev adds a character device node.
func (w *Writer) CharDev(name string, perm, major, minor uint32) error {
	return w.entry(name, TypeChar|perm&0o7777, 0, major, minor)
}

// Symlink adds a symbolic link to target.
func (w *Writer) Symlink(name, target string) error {
	if err := w.entry(name, TypeLink|0o777, int64(len(target)), 0, 0); err != nil {
		return err
	}
	return w.data(strings.NewReader(target), int64(len(target)))
}

// Bytes adds a regular file with the given contents.
func (w *Writer) Bytes(name string, perm uint32, b []byte) error {
	if err := w.entry(name, TypeReg|perm&0o7777, int64(len(b)), 0, 0); err != nil {
		return err
	}
	return w.data(strings.NewReader(string(b)), int64(len(b)))
}

// File adds a regular file copied from the host file src.
func (w *Writer) File(name string, perm uint32, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return w.fail(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return w.fail(err)
	}
	if !st.Mode().IsRegular() {
		return w.fail(fmt.Errorf("cpio: %s is not a regular file", src))
	}
	if err := w.entry(name, TypeReg|perm&0o7777, st.Size(), 0, 0); err != nil {
		return err
	}
	return w.data(f, st.Size())
}

func (w *Writer) data(r io.Reader, size int64) error {
	n, err := io.Copy(w.w, io.LimitReader(r, size))
	w.off += n
	if err == nil && n != size {
		err = fmt.Errorf("cpio: file changed size while being archived (%d of %d bytes)", n, size)
	}
	if err != nil {
		return w.fail(err)
	}
	return w.pad()
}

// Close writes the trailer and flushes; it does not close the underlying
// writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if err := w.header(header{name: trailer, nlink: 1}); err != nil {
		return err
	}
	// Pad the archive to a multiple of 512 bytes, as cpio(1) does.
	if n := (512 - w.off%512) % 512; n > 0 {
		if _, err := w.w.Write(make([]byte, n)); err != nil {
			return w.fail(err)
		}
		w.off += n
	}
	if err := w.w.Flush(); err != nil {
		return w.fail(err)
	}
	return nil
}
