package blockhash

import "io"

// Hash reads r to EOF and appends the Sum of each block to sums. It returns
// the appended slice and the number of bytes read. The tests hash with it
// what HashFile and HashRange must hash the same.
func (h *Reader) Hash(r io.Reader, sums []byte) ([]byte, int64, error) {
	var total int64
	for {
		n, err := io.ReadFull(r, h.buf)
		total += int64(n)
		sums = h.sum(h.buf[:n], sums)
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return sums, total, nil
		default:
			return sums, total, err
		}
	}
}
