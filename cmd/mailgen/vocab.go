package main

import (
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// zipfSlots is the size of a language's word-sampling table.
const zipfSlots = 1 << 16

// A language is a pseudo-language: real function words at the top ranks,
// then invented words built from its syllables, sampled with a Zipf law.
type language struct {
	code       string
	weight     int // share of threads, in percent
	function   []string
	onsets     []string
	nuclei     []string
	codas      []string
	firstNames []string
	lastNames  []string
	greetings  []string // each has one %s for the first name
	closings   []string
	wrote      string // "On DATE, NAME wrote:"; DATE then NAME
	forward    string
	nwords     int

	words []string
	table [zipfSlots]uint16
}

var languages = []*language{
	{
		code: "en", weight: 68, nwords: 4000,
		function:   strings.Fields("the of and to a in is that for it on you with as was be this are have not at by we from or but your will can an all if they so would about there our more what has when which their been one me do just up out also please thanks"),
		onsets:     strings.Fields("b c d f g h j k l m n p r s t v w y br cr dr fr gr pr tr bl cl fl gl pl sl sh ch th wh st sp sc sk sm sn sw qu str"),
		nuclei:     strings.Fields("a e i o u a e i o ea ee oo ai ou ie oa y"),
		codas:      []string{"", "", "", "n", "r", "t", "s", "l", "d", "m", "ng", "nd", "st", "ck", "th", "rt", "nt", "ll", "ss", "x", "ght", "tion", "ment", "ness", "ing", "ed", "er", "ly"},
		firstNames: strings.Fields("James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Susan Richard Jessica Joseph Sarah Thomas Karen Emily Daniel Olivia Chris Megan Kevin Laura Brian Rachel"),
		lastNames:  strings.Fields("Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Thomas Moore Martin Jackson Thompson White Harris Clark Lewis Walker Hall Young King Wright Scott Green Baker Adams"),
		greetings:  []string{"Hi %s,", "Hello %s,", "Dear %s,", "Hey %s,", "%s,"},
		closings:   []string{"Best regards,", "Thanks,", "Cheers,", "Kind regards,", "Best,", "Thanks in advance,"},
		wrote:      "On %s, %s wrote:",
		forward:    "---------- Forwarded message ---------",
	},
	{
		code: "de", weight: 12, nwords: 2500,
		function:   strings.Fields("der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an werden aus er hat dass sie nach wird bei einer um am sind noch wie einem über einen so zum war haben nur oder aber vor zur bis mehr durch man bitte danke"),
		onsets:     strings.Fields("b d f g h k l m n p r s t w z br dr fr gr kr pr tr bl fl gl kl pl schl sch st sp str schw zw pf ch"),
		nuclei:     strings.Fields("a e i o u ä ö ü ei ie au eu a e i o ee"),
		codas:      []string{"", "", "n", "r", "t", "s", "l", "ch", "ng", "nd", "st", "tz", "ck", "ft", "cht", "ß", "ung", "heit", "keit", "en", "er", "lich"},
		firstNames: strings.Fields("Jörg Jürgen Günter Anna Lukas Sophie Maximilian Hannah Björn Julia Felix Katharina Jonas Lena Tobias Sabine Uwe Frauke Dieter Märte"),
		lastNames:  strings.Fields("Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch Bauer Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Krüger Köhler Groß"),
		greetings:  []string{"Hallo %s,", "Liebe(r) %s,", "Hi %s,", "Moin %s,", "Sehr geehrte(r) %s,"},
		closings:   []string{"Viele Grüße,", "Beste Grüße,", "Mit freundlichen Grüßen,", "VG,", "Gruß,"},
		wrote:      "Am %s schrieb %s:",
		forward:    "---------- Weitergeleitete Nachricht ---------",
	},
	{
		code: "fr", weight: 9, nwords: 2500,
		function:   strings.Fields("de la le et les des en un du une que est pour qui dans a par plus pas au sur ne se ce il sont avec ou son mais nous vous elle comme été cette tout leur aussi merci bien très"),
		onsets:     strings.Fields("b c d f g j l m n p r s t v br cr dr fr gr pr tr bl cl fl pl ch qu gu"),
		nuclei:     strings.Fields("a e i o u é è ê à ou oi au eau ai ei an on in"),
		codas:      []string{"", "", "", "n", "r", "s", "t", "l", "x", "nt", "rs", "ment", "tion", "ique", "eur", "ette", "ier", "ç"},
		firstNames: strings.Fields("Jérôme Hélène François Amélie Benoît Céline Théo Chloé Léa Gaëlle Étienne Camille Noémie Raphaël Inès Loïc Margaux"),
		lastNames:  strings.Fields("Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefèbvre Michel Garcia Rousseau Blanc Guérin Faure Chevalier"),
		greetings:  []string{"Bonjour %s,", "Salut %s,", "Cher %s,", "Bonsoir %s,"},
		closings:   []string{"Cordialement,", "Bien à vous,", "Merci d'avance,", "Bonne journée,", "Amicalement,"},
		wrote:      "Le %s, %s a écrit :",
		forward:    "-------- Message transféré --------",
	},
	{
		code: "es", weight: 6, nwords: 2000,
		function:   strings.Fields("de la que el en y a los se del las un por con no una su para es al lo como más pero sus le ya o este sí porque esta entre cuando muy sin sobre también gracias saludos"),
		onsets:     strings.Fields("b c d f g j l m n p r s t v z br cr dr fr gr pr tr bl cl pl ll ch rr ñ"),
		nuclei:     strings.Fields("a e i o u á é í ó ú ia ie io ue ua"),
		codas:      []string{"", "", "", "n", "r", "s", "l", "d", "z", "ción", "dad", "mente", "ado", "ido", "ero"},
		firstNames: strings.Fields("José María Andrés Lucía Sofía Martín Ramón Inés Begoña Íñigo Nuria Álvaro Marta Pablo Elena"),
		lastNames:  strings.Fields("García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Martín Jiménez Ruiz Hernández Díaz Muñoz Álvarez Romero Núñez"),
		greetings:  []string{"Hola %s,", "Estimado %s,", "Buenos días %s,"},
		closings:   []string{"Saludos,", "Un saludo,", "Atentamente,", "Gracias,"},
		wrote:      "El %s, %s escribió:",
		forward:    "---------- Mensaje reenviado ---------",
	},
	{
		code: "ru", weight: 5, nwords: 2000,
		function:   strings.Fields("и в не на я что он с как а то все она так его но да ты к у же вы за бы по только ее мне было вот от меня еще нет о из ему теперь когда спасибо пожалуйста"),
		onsets:     strings.Fields("б в г д ж з к л м н п р с т ф х ц ч ш щ бр вр гр др кр пр тр ст сп ск зв св"),
		nuclei:     strings.Fields("а е и о у ы э ю я а о е"),
		codas:      []string{"", "", "", "н", "р", "т", "с", "л", "к", "м", "й", "ть", "ние", "ость", "ство", "ский"},
		firstNames: strings.Fields("Алексей Мария Дмитрий Анна Сергей Елена Иван Ольга Николай Татьяна Павел Наталья"),
		lastNames:  strings.Fields("Иванов Смирнова Кузнецов Попова Васильев Петрова Соколов Михайлова Новиков Фёдорова Морозов Волкова"),
		greetings:  []string{"Привет, %s!", "Здравствуйте, %s!", "Добрый день, %s!"},
		closings:   []string{"С уважением,", "Спасибо,", "Всего доброго,"},
		wrote:      "%s, %s пишет:",
		forward:    "-------- Пересылаемое сообщение --------",
	},
}

// buildVocabularies fills words and the Zipf table of every language.
// The result depends only on r's state.
func buildVocabularies(r *rand.Rand) {
	for _, l := range languages {
		l.build(r)
	}
}

func (l *language) build(r *rand.Rand) {
	seen := make(map[string]bool, l.nwords)
	l.words = l.words[:0]
	for _, w := range l.function {
		if !seen[w] {
			seen[w] = true
			l.words = append(l.words, w)
		}
	}
	for tries := 0; len(l.words) < l.nwords && tries < l.nwords*50; tries++ {
		rank := len(l.words)
		// Frequent words are short, rare ones long.
		syl := 1 + r.IntN(2)
		if rank > 300 {
			syl += r.IntN(2)
		}
		if rank > 1500 {
			syl += r.IntN(2)
		}
		var b strings.Builder
		for s := 0; s < syl; s++ {
			if s == 0 || r.IntN(3) > 0 {
				b.WriteString(pick(r, l.onsets))
			}
			b.WriteString(pick(r, l.nuclei))
			if s == syl-1 || r.IntN(4) == 0 {
				b.WriteString(pick(r, l.codas))
			}
		}
		w := b.String()
		if utf8.RuneCountInString(w) < 2 || seen[w] {
			continue
		}
		seen[w] = true
		l.words = append(l.words, w)
	}
	// Zipf–Mandelbrot weights 1/(rank+2.7)^1.05, sampled through a table.
	cum := make([]float64, len(l.words))
	total := 0.0
	for i := range l.words {
		total += 1 / math.Pow(float64(i)+2.7, 1.05)
		cum[i] = total
	}
	for j := range l.table {
		u := (float64(j) + 0.5) / zipfSlots * total
		l.table[j] = uint16(sort.SearchFloat64s(cum, u))
	}
}

func pick(r *rand.Rand, s []string) string { return s[r.IntN(len(s))] }

// word returns one word sampled with the language's Zipf law.
func (l *language) word(r *rand.Rand) string {
	return l.words[l.table[r.Uint32()&(zipfSlots-1)]]
}

// rareWord returns a word from the language's long tail, for names of
// things: subjects, files, projects.
func (l *language) rareWord(r *rand.Rand) string {
	n := len(l.words)
	return l.words[n/20+r.IntN(n-n/20)]
}

// appendSentence appends one sentence: a capitalised first word, commas now
// and then, a number or a link once in a while, and a full stop.
func (l *language) appendSentence(b []byte, r *rand.Rand) []byte {
	n := 4 + r.IntN(12) + r.IntN(6)
	for i := 0; i < n; i++ {
		if i > 0 {
			if r.IntN(11) == 0 && i < n-1 {
				b = append(b, ',')
			}
			b = append(b, ' ')
		}
		switch x := r.IntN(600); {
		case x == 0:
			b = strconv.AppendInt(b, int64(r.IntN(5000)), 10)
			continue
		case x == 1:
			b = append(b, "https://"...)
			b = appendASCII(b, l.rareWord(r))
			b = append(b, ".example.com/"...)
			b = appendASCII(b, l.word(r))
			b = append(b, '/')
			b = strconv.AppendInt(b, int64(r.IntN(100000)), 10)
			continue
		}
		w := l.word(r)
		if i == 0 {
			b = appendCapitalized(b, w)
		} else {
			b = append(b, w...)
		}
	}
	switch x := r.IntN(12); {
	case x == 0:
		b = append(b, '?')
	case x == 1:
		b = append(b, '!')
	default:
		b = append(b, '.')
	}
	return b
}

// appendParagraph appends a paragraph of sentences without line breaks.
func (l *language) appendParagraph(b []byte, r *rand.Rand) []byte {
	n := 1 + r.IntN(5)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ' ')
		}
		b = l.appendSentence(b, r)
	}
	return b
}

// title returns a short capitalised phrase, for subjects.
func (l *language) title(r *rand.Rand) string {
	n := 2 + r.IntN(6)
	var b []byte
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ' ')
		}
		w := l.word(r)
		if i == 0 || r.IntN(3) == 0 {
			w = l.rareWord(r)
		}
		if i == 0 {
			b = appendCapitalized(b, w)
		} else {
			b = append(b, w...)
		}
	}
	return string(b)
}

func appendCapitalized(b []byte, w string) []byte {
	c, size := utf8.DecodeRuneInString(w)
	b = utf8.AppendRune(b, unicode.ToUpper(c))
	return append(b, w[size:]...)
}

// asciiFold maps the letters used by the languages above to ASCII, for
// e-mail addresses and file names.
var asciiFold = strings.NewReplacer(
	"ä", "ae", "ö", "oe", "ü", "ue", "Ä", "Ae", "Ö", "Oe", "Ü", "Ue", "ß", "ss",
	"é", "e", "è", "e", "ê", "e", "à", "a", "ç", "c", "ë", "e", "ï", "i", "ô", "o", "î", "i", "É", "E",
	"á", "a", "í", "i", "ó", "o", "ú", "u", "ñ", "n", "Á", "A", "Í", "I",
	"а", "a", "б", "b", "в", "v", "г", "g", "д", "d", "е", "e", "ё", "e", "ж", "zh", "з", "z",
	"и", "i", "й", "y", "к", "k", "л", "l", "м", "m", "н", "n", "о", "o", "п", "p", "р", "r",
	"с", "s", "т", "t", "у", "u", "ф", "f", "х", "kh", "ц", "ts", "ч", "ch", "ш", "sh", "щ", "shch",
	"ъ", "", "ы", "y", "ь", "", "э", "e", "ю", "yu", "я", "ya",
	"А", "A", "Д", "D", "Е", "E", "И", "I", "М", "M", "Н", "N", "О", "O", "П", "P", "С", "S",
	"Т", "T", "Ф", "F", "В", "V", "К", "K", "Л", "L", "Ф", "F",
)

func appendASCII(b []byte, s string) []byte {
	s = asciiFold.Replace(s)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b = append(b, c)
		case c >= 'A' && c <= 'Z':
			b = append(b, c+'a'-'A')
		}
	}
	return b
}

func ascii(s string) string { return string(appendASCII(nil, s)) }
