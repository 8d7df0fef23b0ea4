package bpf

import vns "github.com/vishvananda/netns"

// The tests look at whole reads; the product streams them.

func (r *TCPReader) read(ns vns.NsHandle, same bool) ([]TCPSocket, error) {
	var out []TCPSocket
	err := r.ReadEach(ns, same, func(s *TCPSocket) { out = append(out, *s) })
	return out, err
}

func (r *FilesReader) of(pid int) ([]FileSocket, error) {
	var out []FileSocket
	err := r.EachOf(pid, func(f *FileSocket) { out = append(out, *f) })
	return out, err
}

// socketFiles loads the program, reads every process and unloads it.
func socketFiles() ([]FileSocket, error) {
	r, err := NewFilesReader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []FileSocket
	err = r.Each(func(f *FileSocket) { out = append(out, *f) })
	return out, err
}
