package mailform

// Level is how closely a message matches another, from the closest.
type Level int

// The levels, in the order Set.Match tries them.
const (
	// Exact: the same bytes but for line ends (and NUL bytes that a server
	// gives back as 0x80).
	Exact Level = iota + 1
	// HeadersAdded: the same once the fields a server adds are dropped
	// (Print.Added names them).
	HeadersAdded
	// Repaired: a repaired copy (see Repair) of the message.
	Repaired
	// Rebuilt: what a reader sees is the same, the MIME structure is not:
	// a server rebuilt the message.
	Rebuilt
)

func (l Level) String() string {
	switch l {
	case Exact:
		return "exact"
	case HeadersAdded:
		return "headers added"
	case Repaired:
		return "repaired"
	case Rebuilt:
		return "rebuilt"
	}
	return "none"
}

// Set is a multiset of messages known by their Prints, each matched at most
// once. It is not safe for concurrent use.
type Set struct {
	prints []*Print
	ids    []int
	used   []bool
	left   int
	index  [Rebuilt + 1]map[Sum][]int
}

// Add adds a message, named by id.
func (s *Set) Add(id int, p *Print) {
	if s.index[Exact] == nil {
		for l := Exact; l <= Rebuilt; l++ {
			s.index[l] = map[Sum][]int{}
		}
	}
	i := len(s.prints)
	s.prints = append(s.prints, p)
	s.ids = append(s.ids, id)
	s.used = append(s.used, false)
	s.left++
	s.index[Exact][p.Exact] = append(s.index[Exact][p.Exact], i)
	s.index[HeadersAdded][p.Stripped] = append(s.index[HeadersAdded][p.Stripped], i)
	if p.Original != nil {
		s.index[Repaired][p.Original.Stripped] = append(s.index[Repaired][p.Original.Stripped], i)
	}
	s.index[Rebuilt][p.Semantic] = append(s.index[Rebuilt][p.Semantic], i)
}

// Left returns the number of messages not matched yet.
func (s *Set) Left() int { return s.left }

// key is what p is looked up by at level l.
func key(p *Print, l Level) Sum {
	switch l {
	case Exact:
		return p.Exact
	case HeadersAdded, Repaired:
		return p.Stripped
	}
	return p.Semantic
}

// MatchAt finds an unmatched message of the set that matches p at level l
// exactly, marks it matched and returns its id.
func (s *Set) MatchAt(p *Print, l Level) (int, bool) {
	if s.left == 0 || s.index[l] == nil {
		return 0, false
	}
	k := key(p, l)
	for n, i := range s.index[l][k] {
		if !s.used[i] {
			s.used[i] = true
			s.left--
			s.index[l][k] = s.index[l][k][n+1:]
			return s.ids[i], true
		}
	}
	return 0, false
}

// Match finds the closest unmatched message of the set that matches p,
// marks it matched and returns its id and the level.
func (s *Set) Match(p *Print) (int, Level, bool) {
	for l := Exact; l <= Rebuilt; l++ {
		if id, ok := s.MatchAt(p, l); ok {
			return id, l, true
		}
	}
	return 0, 0, false
}

// Unmatched returns the ids of the messages not matched, in the order they
// were added.
func (s *Set) Unmatched() []int {
	var out []int
	for i, u := range s.used {
		if !u {
			out = append(out, s.ids[i])
		}
	}
	return out
}

// Print returns the Print of the message added with id (the first, if
// several have it), or nil.
func (s *Set) Print(id int) *Print {
	for i, x := range s.ids {
		if x == id {
			return s.prints[i]
		}
	}
	return nil
}
