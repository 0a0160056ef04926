"""Curated names for the synthetic NER corpus (see ner_synth.py).

Patterns may hold placeholders that ner_synth fills: <city>, <last>, <year>, <n>, <L>.
Both splits draw from the same lists.
"""

CURATED: dict[str, tuple[str, ...]] = {
    "org": (
        "Siemens", "Volkswagen", "Nestlé", "IKEA", "Philips", "Airbus", "Spotify", "Unilever",
        "Deutsche Bank", "BNP Paribas", "Banco Santander", "Enel", "Allianz", "Carrefour",
        "Heineken", "Ericsson", "Petrobras", "Orlen", "Microsoft", "Google", "Amazon",
        "Renault", "Lufthansa", "Ryanair", "Zalando", "Adidas", "Puma", "Bosch", "BASF",
        "Danone", "L'Oréal", "Inditex", "Telefónica", "Vodafone", "Shell", "Repsol", "Roche",
        "Novartis", "Nokia", "Maersk", "Lego", "Rabobank", "ING", "UBS", "Barclays", "HSBC",
        "Tesco", "Aldi", "Lidl", "United Nations", "World Health Organization", "NATO",
        "European Commission", "European Central Bank", "Red Cross", "Greenpeace",
        "Amnesty International", "UNESCO", "UNICEF", "FIFA", "UEFA", "NASA", "Interpol",
        "OPEC", "IMF", "World Bank", "WTO", "OECD", "Médecins Sans Frontières", "Europol",
        "European Parliament", "Bundesbank", "Eurostat", "Fraunhofer Society", "CERN",
    ),
    "inst": (
        "University of <city>", "<city> University", "<city> Institute of Technology",
        "<city> City Council", "<city> General Hospital", "<city> Chamber of Commerce",
        "<last> Foundation", "<last> Institute", "Central Bank of <city>", "<city> Museum of Art",
        "<city> Symphony Orchestra", "<city> Public Library", "National Theatre of <city>",
        "<city> School of Economics", "<last> Research Centre", "<city> Police Department",
        "<city> Court of Appeal", "<city> Academy of Sciences", "<last> Medical Center",
        "<city> Business School",
    ),
    "media": (
        "Reuters", "Bloomberg", "Le Monde", "Der Spiegel", "El País", "La Repubblica",
        "Financial Times", "BBC", "Al Jazeera", "Associated Press", "Dagens Nyheter",
        "Gazeta Wyborcza", "Folha de S.Paulo", "Die Zeit", "Süddeutsche Zeitung",
        "Corriere della Sera", "Le Figaro", "CNN", "Sky News", "Politico", "<city> Times",
        "<city> Gazette", "Radio <city>", "<city> Herald", "<city> Evening Post",
        "Agence France-Presse", "De Volkskrant", "Helsingin Sanomat", "Público", "Euronews",
    ),
    "club": (
        "FC <city>", "<city> United", "Real <city>", "Sporting <city>", "<city> Rovers",
        "AC <city>", "Olympique <city>", "<city> Wanderers", "SV <city>", "<city> City",
        "Ajax", "Juventus", "Bayern Munich", "Benfica", "Celtic", "Galatasaray", "Porto",
        "Borussia Dortmund", "Atlético Madrid", "Inter Milan", "Feyenoord", "Legia Warsaw",
        "Malmö FF", "Flamengo", "Anderlecht", "Rapid Vienna", "Sparta Prague", "Rosenborg",
        "Dinamo Zagreb", "Young Boys",
    ),
    "country": (
        "Germany", "France", "Spain", "Italy", "Poland", "Sweden", "Brazil", "Portugal",
        "Canada", "Japan", "Kenya", "Chile", "Norway", "Denmark", "Finland",
    ),
    "geo": (
        "the Alps", "the Pyrenees", "the Danube", "the Rhine", "the Thames", "the Seine",
        "Mont Blanc", "Lake Geneva", "the Baltic Sea", "the Mediterranean", "the Sahara",
        "the Amazon", "the Andes", "the Himalayas", "Scandinavia", "the Balkans", "Siberia",
        "Patagonia", "Tuscany", "Bavaria", "Provence", "Andalusia", "Lapland", "Sicily",
        "Crete", "Corsica", "the North Sea", "the Black Forest", "Europe", "Asia", "Africa",
        "South America", "the Atlantic", "the Pacific", "the Dolomites", "Lake Como",
        "the Loire Valley", "Normandy", "the Highlands", "Iceland", "the Carpathians",
        "the Vistula", "Mount Etna", "Gotland", "the Algarve",
    ),
    "nat": (
        "German", "French", "Spanish", "Italian", "Dutch", "Polish", "Swedish", "British",
        "American", "Brazilian", "Portuguese", "Canadian", "Australian", "Japanese",
        "Chinese", "Indian", "Mexican", "Norwegian", "Danish", "Finnish", "Irish", "Scottish",
        "Swiss", "Austrian", "Belgian", "Greek", "Turkish", "Russian", "Ukrainian", "Czech",
        "Hungarian", "Romanian", "Korean", "Nigerian", "Kenyan", "Egyptian", "Argentine",
        "Chilean", "Colombian", "Peruvian", "European", "African", "Asian", "Scandinavian",
        "Icelandic", "Croatian", "Serbian", "Slovak", "Estonian", "Moroccan",
    ),
    "lang": (
        "English", "German", "French", "Spanish", "Italian", "Dutch", "Polish", "Swedish",
        "Portuguese", "Mandarin", "Japanese", "Arabic", "Hindi", "Russian", "Turkish", "Greek",
        "Finnish", "Catalan", "Basque", "Welsh", "Swahili", "Korean", "Hungarian", "Czech",
        "Danish", "Norwegian", "Romanian", "Hebrew", "Latin", "Esperanto",
    ),
    "event": (
        "World Cup", "Olympic Games", "Tour de France", "Wimbledon", "Champions League",
        "Oktoberfest", "Super Bowl", "Eurovision Song Contest", "Cannes Film Festival",
        "Berlinale", "Mobile World Congress", "Web Summit", "<city> Marathon",
        "<city> Book Fair", "<city> Jazz Festival", "<year> Summer Olympics", "<city> Open",
        "<year> World Championships", "Venice Biennale", "Roland Garros", "Giro d'Italia",
        "Frankfurt Motor Show", "<city> Film Festival", "Paris Air Show", "Carnival of <city>",
        "<year> European Championship", "Edinburgh Fringe", "Glastonbury Festival",
        "Euro <year>", "Winter Olympics",
    ),
    "product": (
        "iPhone <n>", "Galaxy S<n>", "Windows <n>", "PlayStation <n>", "Model <n>",
        "Boeing 7<n>7", "Airbus A3<n>0", "Android", "Linux", "Excel", "Photoshop", "ChatGPT",
        "Golf GTI", "Xbox Series <L>", "ThinkPad X<n>", "Kindle", "Walkman", "Corolla",
        "Fiat <n>00", "Volvo XC<n>0", "Nintendo Switch", "MacBook Air", "Pixel <n>",
        "Range Rover", "Skype", "Instagram", "Firefox", "Vespa", "Leica M<n>", "Tesla Model <L>",
    ),
    "award": (
        "Nobel Prize", "Pulitzer Prize", "Booker Prize", "Golden Globe", "Academy Award",
        "Palme d'Or", "Golden Bear", "Ballon d'Or", "Grammy", "Turing Award", "Fields Medal",
        "Prix Goncourt", "Pritzker Prize", "Emmy", "Golden Lion",
    ),
}
