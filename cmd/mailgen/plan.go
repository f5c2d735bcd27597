package main

import (
	"math"
	"math/rand/v2"
)

// Attachment sizes (raw bytes, before base64) are drawn from a truncated
// Pareto law on [attMin, attMax].
const (
	attMin        = 50 << 10
	attMax        = 5 << 20
	attPartHeader = 260 // bytes of MIME part headers around an attachment
	attShare      = 0.15
	reuseShare    = 0.30
	minText       = 900 // smallest planned headers+text size of a message
	maxText       = 96 << 10
)

// A plan fixes every message's size before any is written, so that the
// total lands near the target.
type plan struct {
	text  []int32   // per message: planned bytes of headers and text parts
	atts  [][]int32 // per message: indices into attachments, nil for most
	attch []attachment
	// instances is the number of attachment parts, reused ones included.
	instances int
}

// An attachment is one distinct attachment; several messages may carry it.
type attachment struct {
	size     int64 // raw bytes
	kind     uint8 // index into attachmentKinds
	firstUse int32 // index of the first message that carries it
}

// base64Size returns the size of n bytes encoded as base64 in lines of 76
// characters, each ended by "\n".
func base64Size(n int64) int64 {
	full, rem := n/57, n%57
	s := full * 77
	if rem > 0 {
		s += (rem+2)/3*4 + 1
	}
	return s
}

// makePlan plans n messages adding up to about total bytes.
func makePlan(r *rand.Rand, n int, total int64) *plan {
	p := &plan{text: make([]int32, n), atts: make([][]int32, n)}
	if n == 0 {
		return p
	}
	perMsg := float64(total) / float64(n)
	// Text sizes: log-normal, median 5.5 KB (most messages 2–20 KB), or
	// smaller when the budget per message is small.
	median, sigma := 5500.0, 0.75
	if perMsg < 16000 {
		median, sigma = perMsg*0.8, 0.5
	}
	var sumText float64
	for i := range p.text {
		t := median * math.Exp(sigma*r.NormFloat64())
		t = math.Max(math.Min(t, maxText), math.Min(minText, median))
		p.text[i] = int32(t)
		sumText += t
	}

	// Attachments take what the text leaves, if each can be at least
	// attMin.
	budget := float64(total) - sumText
	meanEnc := func(raw float64) float64 { return raw*77/57 + attPartHeader }
	inst := int(math.Round(attShare * 1.25 * float64(n)))
	if budget < float64(inst)*meanEnc(attMin*1.5) {
		inst = int(budget / meanEnc(attMin*3))
	}
	if inst > 0 {
		// Spread the instances over messages: 1, 2 or 3 per message.
		holders := max(1, int(math.Round(float64(inst)/1.25)))
		prob := math.Min(1, float64(holders)/float64(n))
		mu := (budget/float64(inst) - attPartHeader) * 57 / 77
		alpha := solveParetoAlpha(mu)
		recent := []int32{} // last distinct attachments, candidates for reuse
		for i := 0; i < n; i++ {
			if r.Float64() >= prob {
				continue
			}
			k := 1
			if x := r.IntN(20); x >= 19 {
				k = 3
			} else if x >= 16 {
				k = 2
			}
			for j := 0; j < k; j++ {
				p.instances++
				if len(recent) > 0 && r.Float64() < reuseShare {
					a := recent[r.IntN(len(recent))]
					if !containsInt32(p.atts[i], a) {
						p.atts[i] = append(p.atts[i], a)
						continue
					}
				}
				u := (float64(r.IntN(1<<20)) + 0.5) / (1 << 20)
				a := int32(len(p.attch))
				p.attch = append(p.attch, attachment{
					size:     int64(paretoQuantile(u, alpha)),
					kind:     uint8(r.IntN(len(attachmentKinds))),
					firstUse: int32(i),
				})
				p.atts[i] = append(p.atts[i], a)
				recent = append(recent, a)
				if len(recent) > 40 {
					recent = recent[1:]
				}
			}
		}
		// Scale the distinct attachments so that the parts add up to the
		// budget; reused parts follow their original. Sizes clamped at the
		// bounds stay there, so repeat until the others have made up.
		for range 8 {
			var enc float64
			for _, as := range p.atts {
				for _, a := range as {
					enc += meanEnc(float64(p.attch[a].size))
				}
			}
			hdr := float64(p.instances) * attPartHeader
			if enc <= hdr {
				break
			}
			f := (budget - hdr) / (enc - hdr)
			for i := range p.attch {
				s := float64(p.attch[i].size) * f
				p.attch[i].size = int64(math.Max(attMin/4, math.Min(s, attMax*2)))
			}
		}
	} else if sumText > 0 {
		// No attachments: scale the text to the target instead.
		f := float64(total) / sumText
		for i, t := range p.text {
			p.text[i] = int32(math.Max(minText/2, float64(t)*f))
		}
	}
	return p
}

func containsInt32(s []int32, v int32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// paretoQuantile is the u-quantile of the Pareto law with index alpha
// truncated to [attMin, attMax].
func paretoQuantile(u, alpha float64) float64 {
	ratio := math.Pow(attMin/attMax, alpha)
	return attMin / math.Pow(1-u*(1-ratio), 1/alpha)
}

// solveParetoAlpha finds the index whose truncated Pareto law has mean mu,
// clamped to what the bounds allow.
func solveParetoAlpha(mu float64) float64 {
	mean := func(alpha float64) float64 {
		const steps = 512
		s := 0.0
		for i := 0; i < steps; i++ {
			s += paretoQuantile((float64(i)+0.5)/steps, alpha)
		}
		return s / steps
	}
	lo, hi := 0.02, 8.0 // the mean falls as alpha grows
	for range 60 {
		mid := (lo + hi) / 2
		if mean(mid) > mu {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}
