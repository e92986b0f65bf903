//go:build !amd64

package blockhash

const hasLanes = false

func runLanes(l *lanes, in *[16][]byte) [16][32]byte { panic("blockhash: no lanes on this CPU") }
