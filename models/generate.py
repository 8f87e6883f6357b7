"""A reproducible generator of synthetic multilingual EuroChef+ support tickets.

EuroChef+ is a fictional European culinary streaming service (cooking shows, chefs, recipes, live classes;
Free, Premium at €12.99/month, Family and Enterprise plans). Tickets are built compositionally:

1. labels are sampled with priors and co-occurrences (:func:`_sample_labels`);
2. each label contributes one cue fragment in the ticket's language, drawn from :data:`CUE_TEMPLATES`
   and filled from vocabularies (dishes, chefs, shows, devices, error codes, prices, dates...);
3. fragments are assembled with optional greetings, label-free filler sentences, sign-offs and signatures,
   in one of three styles (terse one-liner, plain message, e-mail);
4. the mess of real support is added: typos, lower case, CAPS, missing punctuation or accents, emoji,
   English tech words in French, German and Dutch.

Every fifth template of each cue pool (by index) is *held out*: ``test_heldout`` uses only those, and the
other splits never do, so a model's score there measures generalisation to unseen phrasings.
"""

from __future__ import annotations

import json
import logging
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from models.datasets import Example, write_jsonl
from models.errors import DataError
from models.taxonomy import Taxonomy, load_taxonomy

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "1"
LANGUAGE_WEIGHTS: dict[str, float] = {"en": 0.40, "de": 0.25, "fr": 0.20, "nl": 0.15}

TOPICS = ("technical_issue", "billing", "account_access", "content_request", "feature_request", "cancellation")
URGENCY = ("urgent", "low_priority")
USER_TYPES = ("premium_user", "free_user", "enterprise")
EMOTIONS = ("frustrated", "aggressive", "confused", "satisfied")
LABELS = TOPICS + URGENCY + USER_TYPES + EMOTIONS

HELDOUT_EVERY = 5
"""Template ``i`` of every cue pool is held out when ``i % HELDOUT_EVERY == HELDOUT_EVERY - 1``."""

MIN_TICKETS = 10

# ---------------------------------------------------------------------------------------------------------------
# Cue templates: language -> label -> phrasings. Slots in braces are filled by ``_fill``.
# Topic templates must not reveal urgency, user type or emotion; cue templates must not reveal a topic.
# ---------------------------------------------------------------------------------------------------------------

CUE_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "technical_issue": (
            "The video keeps freezing halfway through {show} on my {device}.",
            "The app crashes every time I open the recipe for {dish}.",
            "I get error {error} when I try to play anything.",
            'Playback stops after a few seconds and shows "{errmsg}".',
            "Since the last update the app won't open on my {device}, just a black screen.",
            "The live class with {chef} kept buffering and then the stream dropped completely.",
            "Sound and picture are out of sync on my {device}.",
            "Video quality is stuck at 480p even though my internet is fine.",
            "I can't cast to my Chromecast, the cast icon doesn't even show up.",
            "The subtitles on {show} are out of sync with the audio.",
            "app keeps crashing on {device}",
            "Every episode of {show} stops loading at the same point, the wheel just spins forever.",
            "There is no sound at all on my {device}, other apps work fine.",
            "When I tap 'Start cooking' the app jumps straight back to the home screen.",
            "Downloaded episodes won't play, it says {error}.",
            "video not loading. error {error}",
            "Could you check why the live stream of {chef} cuts out on my {device} every few minutes?",
            "player stuck on loading",
            "no sound on {device}??",
            "black screen after update",
        ),
        "billing": (
            "I was charged twice this month, {amount} each time.",
            "Can you send me an invoice for my last payment? I can't find it in my account.",
            "My card was declined but the money still left my account.",
            "I'd like a refund for the charge of {amount} on {date}.",
            "Why did the price go up without any notice?",
            "I want to change my payment method from credit card to PayPal.",
            "There is a charge from EuroChef+ of {amount} that I don't recognise.",
            "Invoice {invoice} shows the wrong amount.",
            "My bank statement shows {n} payments to EuroChef+ in one month.",
            "The promo code {promo} was not applied to my payment.",
            "Please update the billing address on my invoices, I moved to {city}.",
            "double charged, {amount} twice on my card",
            "I switched to annual billing but I'm still being charged monthly.",
            "The payment failed and now I'm being asked to pay {amount} again.",
            "What is the charge of {amount} on {date} for?",
            "refund please, order {order}",
            "charged twice",
            "where is my invoice",
            "wrong amount on invoice {invoice}",
        ),
        "account_access": (
            "I can't log in to my account, it says my password is wrong but I just reset it.",
            "The password reset email never arrives, I've checked my spam folder.",
            "My account has been locked after too many login attempts.",
            "I think my account was hacked, someone changed my email address.",
            "I'm not receiving the two-factor code by SMS.",
            "My profile disappeared and my saved recipes are gone.",
            "Sign in with Apple doesn't work anymore, it just loops back to the login page.",
            "I no longer have access to the email address I signed up with. How do I get into my account?",
            "I keep getting logged out on my {device} every few minutes.",
            "login not working since yesterday",
            "It says 'account not found' when I enter my email, but I've been using EuroChef+ for years.",
            "Someone else is using my profile, there are shows in my history I never watched.",
            "The verification link in the email has expired and I can't request a new one.",
            "I changed my phone number and now I can't get the login code.",
            "can't sign in on {device}, error {error}",
            "Can you reset my password? The reset link says it is invalid.",
            "locked out of my account",
            "password reset not working",
            "2FA code never arrives",
        ),
        "content_request": (
            "Could you add more {cuisine} recipes? There are almost none.",
            "Are you planning a show with {chef}? I would love to see it.",
            "Please add Dutch subtitles to {show}.",
            "I'm looking for a recipe for {dish} but can't find one anywhere on the platform.",
            "Will there be a new season of {show}?",
            "It would be great to have more vegetarian and vegan content.",
            "Can you bring back {show}? It disappeared from the catalogue.",
            "Do you have any classes on sourdough bread? I'd love a proper series on it.",
            "Please add French audio for the classes of {chef}.",
            "More gluten-free recipes please!",
            "My kids love cooking, any chance of a children's cooking show?",
            "I'd like to see a masterclass on {dish} from a real {cuisine} chef.",
            "German subtitles are missing on {show}, can you add them?",
            "request: {dish} recipe video",
            "Please add more quick weeknight dinners, 20 minutes max.",
            "Any plans for a series on regional {cuisine} cooking?",
            "pls add more {cuisine} recipes",
            "new season of {show} when?",
        ),
        "feature_request": (
            "It would be great if I could add the ingredients straight to a shopping list.",
            "Please add a dark mode, the app is very bright in the evening.",
            "Could you add built-in timers to the recipe steps?",
            "I'd love an option to scale recipes to the number of people.",
            "A meal planner for the week would be really useful.",
            "Can you add a way to switch between metric and imperial units?",
            "It would help if the screen didn't go to sleep while I'm following a recipe.",
            "Please let us save recipes into our own folders or collections.",
            "How about voice control, so I don't have to touch the screen with floury hands?",
            "Would be nice to see nutrition info for each recipe.",
            "Please make it possible to print a recipe or export it as PDF.",
            "suggestion: let me rate and comment on recipes",
            "An offline mode for recipes would be handy when my kitchen wifi is bad.",
            "Could you add playback speed control for the cooking videos?",
            "It'd be nice to have a step-by-step mode with big text on my {device}.",
            "Feature idea: filter recipes by what's in my fridge.",
            "dark mode pls",
            "shopping list feature would be nice",
        ),
        "cancellation": (
            "I want to cancel my subscription.",
            "Please don't renew my subscription at the end of this month.",
            "How do I cancel? I can't find the option anywhere in the app.",
            "Please close my account and delete all my data.",
            "I'd like to end my membership from {date}.",
            "I cancelled last month, but the subscription is still active.",
            "cancel my account pls",
            "I'm moving abroad and won't use EuroChef+ anymore, so please stop my subscription.",
            "Please confirm that my subscription has been cancelled.",
            "I want to unsubscribe, effective immediately.",
            "We've decided to stop using EuroChef+, please terminate the account.",
            "Cancel my plan before the next renewal date, please.",
            "I don't want to continue after this month, how do I turn off auto-renewal?",
            "Time to say goodbye, please cancel everything.",
            "I'd like to cancel and have my profile removed.",
            "cancel subscription",
            "how to cancel",
            "stop my subscription",
        ),
        "urgent": (
            "Please fix this as soon as possible.",
            "Our live class starts {soon}, I need this working now!",
            "URGENT: I need this sorted today.",
            "I need an answer today, please.",
            "I'm hosting a dinner tonight and need the recipe right now.",
            "asap please!!",
            "Please call me back immediately.",
            "This is time-critical, please treat it as a priority.",
            "I have a cooking exam tomorrow morning and need access before then.",
            "Every hour counts here, please hurry.",
            "Need help right now please",
            "Please escalate this, it can't wait until Monday.",
            "URGENT",
            "need it fixed today",
        ),
        "low_priority": (
            "No rush on this.",
            "Whenever you have time, no hurry.",
            "Just a small thing, not urgent at all.",
            "It's not a big deal, just wanted to mention it.",
            "Not urgent, just curious.",
            "Take your time, it's only a minor thing.",
            "Low priority, just letting you know.",
            "No need to reply quickly.",
            "Just something for your list, no pressure.",
            "If you get a chance at some point, that'd be nice.",
            "Not important, but thought I'd ask.",
            "no rush",
            "whenever is fine",
        ),
        "premium_user": (
            "I'm a Premium subscriber.",
            "I pay {premium_price} every month for this.",
            "I've been a Premium member since {year}.",
            "I'm on the Premium plan.",
            "premium user here",
            "I upgraded to Premium last month.",
            "My Premium subscription renews every month.",
            "I have the {premium_price} plan.",
            "We've had Premium for {n} years now.",
            "I pay for Premium specifically for the HD videos.",
            "(Premium account)",
            "I'm on Premium, so this should be included.",
            "premium member",
            "paying premium",
        ),
        "free_user": (
            "I'm using the free version.",
            "I only have a free account.",
            "I'm on the free trial at the moment.",
            "I haven't paid for anything yet, I'm just on the free plan.",
            "free user here",
            "I signed up for the 7-day trial yesterday.",
            "I'm still on the free tier, thinking about upgrading.",
            "With the free plan I can only watch a few episodes, that's fine.",
            "I don't have a paid subscription, just the free one.",
            "My trial ends on {date}.",
            "(free account)",
            "on the free plan",
            "trial user",
        ),
        "enterprise": (
            "We are a hotel school with {seats} students on a business licence.",
            "I manage the EuroChef+ team account for our restaurant group.",
            "Our {seats} chefs at {org} use EuroChef+ for training.",
            "I'm the admin of our company licence ({seats} seats).",
            "This affects all kitchens in our hotel chain.",
            "We use EuroChef+ in class at our culinary school in {city}.",
            "Our business account covers {n} restaurants.",
            "I'm writing on behalf of {org}, we have an Enterprise licence.",
            "enterprise account, {seats} users",
            "As the training manager at {org}, I look after our EuroChef+ seats.",
            "All our kitchen apprentices learn with your platform.",
            "business licence, {seats} seats",
            "school account",
        ),
        "frustrated": (
            "This is really frustrating.",
            "I'm fed up with this.",
            "This is the third time I'm contacting you about this.",
            "Honestly, I'm very disappointed.",
            "It's so annoying.",
            "Why does this keep happening?",
            "I've already wasted a whole evening on this.",
            "Not happy at all.",
            "ugh, again.",
            "I expected a lot better than this.",
            "Getting really tired of this.",
            "This has been going on for weeks and nobody seems to care.",
            "so annoying",
            "again?!",
        ),
        "aggressive": (
            "This is a SCAM and you know it.",
            "FIX IT NOW or I'll post a review on Trustpilot telling everyone how useless you are.",
            "Your support is completely useless, are you all incompetent?",
            "I'm going to do a chargeback with my bank and report you.",
            "If this isn't sorted I'm calling my lawyer.",
            "What a joke of a company. Absolute garbage.",
            "Stop ignoring me, you clowns.",
            "WORST SERVICE EVER. I'll make sure everyone knows.",
            "Don't bother sending me another copy-paste answer, idiots.",
            "I'll report you to consumer protection, this is theft.",
            "Are you people braindead??",
            "USELESS",
            "refund or chargeback, your choice",
        ),
        "confused": (
            "I don't understand what's going on.",
            "I'm a bit confused, can someone explain how this works?",
            "Am I doing something wrong?",
            "I'm not sure where to find this in the app.",
            "What does this even mean?",
            "I really don't get it, the website says one thing and the app another.",
            "Is this normal or is it something on my end?",
            "Sorry if this is a stupid question.",
            "I've looked through the FAQ but I still don't understand.",
            "Could you explain what I'm supposed to do?",
            "?? no idea what happened",
            "confused",
            "what??",
        ),
        "satisfied": (
            "I love EuroChef+, the shows are amazing.",
            "Thanks a lot for the great service so far!",
            "The classes of {chef} are brilliant, the whole family loves them.",
            "Otherwise, great app, keep it up!",
            "Your support team helped me quickly last time, thank you.",
            "Big fan of the platform, really.",
            "The {dish} episode was fantastic.",
            "Really happy with the app overall 👍",
            "Thank you so much, you guys are great.",
            "I've learned so much from your classes.",
            "Best cooking app I've used.",
            "love the app",
            "great shows btw",
        ),
    },
    "fr": {
        "technical_issue": (
            "La vidéo se fige au milieu de {show} sur mon {device}.",
            "L'application plante à chaque fois que j'ouvre la recette « {dish} ».",
            "J'ai le message d'erreur {error} dès que je lance une vidéo.",
            "Le streaming bug complètement depuis hier soir.",
            "Depuis la dernière mise à jour, l'appli ne s'ouvre plus sur mon {device}, écran noir.",
            "Le cours en direct avec {chef} n'arrêtait pas de charger, puis le live a coupé.",
            "Le son est décalé par rapport à l'image.",
            "La qualité reste bloquée en 480p alors que ma connexion est très bonne.",
            "Impossible de caster sur ma Chromecast, l'icône n'apparaît même pas.",
            "Les sous-titres de {show} ne sont pas synchronisés.",
            "l'appli crash sur {device}",
            "Les téléchargements s'arrêtent à 99 % et ne se terminent jamais.",
            "Plus aucun son sur mon {device}, alors que les autres applis marchent.",
            "J'ai un message « {errmsg} » quand je veux regarder un épisode.",
            "Chaque épisode de {show} reste bloqué sur le chargement, la roue tourne à l'infini.",
            "ça marche pas, erreur {error}",
            "Pouvez-vous regarder pourquoi la lecture s'arrête toutes les deux minutes sur mon {device} ?",
            "lecture bloquée sur chargement",
            "pas de son sur {device}",
            "écran noir depuis la mise à jour",
        ),
        "billing": (
            "J'ai été débité deux fois ce mois-ci, {amount} à chaque fois.",
            "Pourriez-vous m'envoyer la facture de mon dernier paiement ? Je ne la trouve pas dans mon compte.",
            "Ma carte a été refusée mais l'argent a quand même été prélevé.",
            "Je souhaiterais être remboursé du prélèvement de {amount} du {date}.",
            "Pourquoi le prix a-t-il augmenté sans prévenir ?",
            "Je voudrais passer du paiement par carte à PayPal.",
            "Je vois un prélèvement de {amount} de EuroChef+ que je ne reconnais pas.",
            "La facture {invoice} indique un mauvais montant.",
            "Mon relevé bancaire montre {n} paiements à EuroChef+ sur le même mois.",
            "Le code promo {promo} n'a pas été pris en compte.",
            "Merci de mettre à jour l'adresse de facturation, j'ai déménagé à {city}.",
            "double prélèvement, {amount} x2 sur ma carte",
            "Je suis passée à la facturation annuelle mais on continue de me prélever chaque mois.",
            "Le paiement a échoué et maintenant on me redemande {amount}.",
            "À quoi correspond le prélèvement de {amount} du {date} ?",
            "remboursement svp, commande {order}",
            "prélevé deux fois",
            "facture introuvable",
            "mauvais montant sur la facture {invoice}",
        ),
        "account_access": (
            "Je n'arrive plus à me connecter, on me dit que le mot de passe est faux alors que je viens de le changer.",
            "Je ne reçois pas l'e-mail de réinitialisation du mot de passe, j'ai vérifié les spams.",
            "Mon compte est bloqué après plusieurs tentatives de connexion.",
            "Je pense que mon compte a été piraté, quelqu'un a changé l'adresse e-mail.",
            "Je ne reçois pas le code de vérification par SMS.",
            "Mon profil a disparu avec toutes mes recettes enregistrées.",
            "La connexion avec Apple ne marche plus, ça me renvoie toujours sur la page de login.",
            "Je n'ai plus accès à l'adresse mail de mon inscription, comment récupérer mon compte ?",
            "Je suis déconnecté toutes les cinq minutes sur mon {device}.",
            "impossible de me logger depuis hier",
            "On me dit « compte introuvable » alors que j'utilise EuroChef+ depuis des années.",
            "Quelqu'un d'autre utilise mon profil, il y a des émissions dans mon historique que je n'ai jamais vues.",
            "Le lien de validation a expiré et je ne peux pas en redemander un.",
            "J'ai changé de numéro et je ne reçois plus le code de connexion.",
            "Le login ne passe pas sur {device}, erreur {error}.",
            "mot de passe oublié et le lien marche pas",
            "compte bloqué",
            "reset mot de passe marche pas",
            "code 2FA jamais reçu",
        ),
        "content_request": (
            "Serait-il possible d'ajouter plus de recettes de cuisine {cuisine} ? Il n'y en a presque pas.",
            "Vous prévoyez une émission avec {chef} ? J'adorerais.",
            "Merci d'ajouter des sous-titres en français pour {show}.",
            "Je cherche une recette de {dish} mais je n'en trouve aucune sur la plateforme.",
            "Y aura-t-il une nouvelle saison de {show} ?",
            "Ce serait top d'avoir plus de contenus végétariens et vegan.",
            "Pouvez-vous remettre {show} ? L'émission a disparu du catalogue.",
            "Vous avez des cours sur le pain au levain ? J'aimerais une vraie série là-dessus.",
            "Est-ce que les cours de {chef} pourraient être doublés en français ?",
            "Plus de recettes sans gluten svp !",
            "Mes enfants adorent cuisiner, une émission de cuisine pour les petits, c'est prévu ?",
            "J'aimerais une masterclass « {dish} » avec un vrai chef.",
            "Il manque les sous-titres en allemand sur {show}, vous pouvez les ajouter ?",
            "demande : vidéo recette {dish}",
            "Plus de plats rapides pour le soir, 20 minutes max, ce serait génial.",
            "Une série sur la cuisine {cuisine} régionale, c'est prévu ?",
            "plus de recettes {cuisine} svp",
            "nouvelle saison de {show} ?",
        ),
        "feature_request": (
            "Ce serait génial de pouvoir ajouter les ingrédients directement à une liste de courses.",
            "Pourriez-vous ajouter un mode sombre ? L'appli est très lumineuse le soir.",
            "Des minuteurs intégrés dans les étapes des recettes, ce serait pratique.",
            "J'aimerais pouvoir adapter les quantités au nombre de personnes.",
            "Un planificateur de repas pour la semaine serait vraiment utile.",
            "Pourriez-vous ajouter la conversion entre grammes et cups ?",
            "Ce serait bien que l'écran ne se mette pas en veille pendant qu'on suit une recette.",
            "Laissez-nous ranger les recettes dans nos propres dossiers, svp.",
            "Et un contrôle vocal ? Pour ne pas toucher l'écran avec les mains pleines de farine.",
            "Les infos nutritionnelles pour chaque recette, ce serait un plus.",
            "Merci de permettre d'imprimer une recette ou de l'exporter en PDF.",
            "suggestion : pouvoir noter et commenter les recettes",
            "Un mode hors ligne pour les recettes, ce serait pratique quand le wifi de la cuisine capte mal.",
            "Pouvez-vous ajouter le réglage de la vitesse de lecture pour les vidéos ?",
            "Une feature « frigo » pour filtrer les recettes selon ce que j'ai chez moi, ça serait top.",
            "Un mode pas-à-pas avec un gros texte sur mon {device}, ce serait bien.",
            "mode sombre svp",
            "une liste de courses dans l'appli, ce serait bien",
        ),
        "cancellation": (
            "Je souhaite résilier mon abonnement.",
            "Merci de ne pas renouveler mon abonnement à la fin du mois.",
            "Comment on résilie ? Je ne trouve l'option nulle part dans l'appli.",
            "Veuillez fermer mon compte et supprimer toutes mes données.",
            "Je voudrais mettre fin à mon abonnement à partir du {date}.",
            "J'ai résilié le mois dernier mais l'abonnement est toujours actif.",
            "résiliation svp",
            "Je pars vivre à l'étranger, merci d'arrêter mon abonnement.",
            "Pouvez-vous me confirmer que mon abonnement est bien résilié ?",
            "Je veux me désabonner avec effet immédiat.",
            "Nous avons décidé d'arrêter EuroChef+, merci de clôturer le compte.",
            "Annulez mon abonnement avant la prochaine date de renouvellement, s'il vous plaît.",
            "Je ne veux pas continuer après ce mois-ci, comment désactiver le renouvellement automatique ?",
            "Je souhaite clôturer mon compte EuroChef+ définitivement.",
            "Je voudrais annuler et que mon profil soit supprimé.",
            "résilier abonnement",
            "comment résilier",
            "arrêtez mon abonnement",
        ),
        "urgent": (
            "Merci de régler ça au plus vite.",
            "Notre cours en direct commence {soon}, il faut que ça marche maintenant !",
            "URGENT : j'ai besoin d'une solution aujourd'hui.",
            "J'ai besoin d'une réponse aujourd'hui s'il vous plaît.",
            "Je reçois des invités ce soir, il me faut la recette tout de suite.",
            "asap svp !!",
            "Rappelez-moi immédiatement s'il vous plaît.",
            "C'est urgent, merci de traiter ma demande en priorité.",
            "J'ai un examen de cuisine demain matin et j'ai besoin d'y accéder avant.",
            "Chaque heure compte, merci de faire vite.",
            "Besoin d'aide tout de suite svp",
            "Ça ne peut pas attendre lundi, merci de faire remonter.",
            "URGENT",
            "à régler aujourd'hui svp",
        ),
        "low_priority": (
            "Rien d'urgent.",
            "Quand vous aurez le temps, pas de souci.",
            "Petit détail, pas urgent du tout.",
            "Ce n'est pas bien grave, je voulais juste le signaler.",
            "Pas pressé, simple curiosité.",
            "Prenez votre temps.",
            "Aucune urgence, c'était juste pour info.",
            "Pas besoin de répondre rapidement.",
            "Juste une idée comme ça, sans pression.",
            "Si un jour vous avez l'occasion, ce serait sympa.",
            "Pas prioritaire, mais je me posais la question.",
            "pas pressé",
            "rien de grave, pas urgent",
        ),
        "premium_user": (
            "Je suis abonné Premium.",
            "Je paie {premium_price} par mois pour ce service.",
            "Je suis membre Premium depuis {year}.",
            "J'ai l'offre Premium.",
            "client premium",
            "Je suis passée à Premium le mois dernier.",
            "Mon abonnement Premium se renouvelle chaque mois.",
            "J'ai la formule à {premium_price}.",
            "On a Premium depuis {n} ans.",
            "Je paie le Premium exprès pour les vidéos en HD.",
            "(compte Premium)",
            "Je suis en Premium, donc c'est censé être inclus.",
            "abonnée premium",
            "je paie le premium",
        ),
        "free_user": (
            "J'utilise la version gratuite.",
            "Je n'ai qu'un compte gratuit.",
            "Je suis en période d'essai en ce moment.",
            "Je n'ai encore rien payé, je suis sur l'offre gratuite.",
            "utilisateur gratuit",
            "Je me suis inscrite hier à l'essai de 7 jours.",
            "Je suis toujours sur la formule gratuite, je réfléchis à passer à la version payante.",
            "Avec le compte gratuit je ne peux regarder que quelques épisodes, ça me va.",
            "Je n'ai pas d'abonnement payant, juste le compte free.",
            "Mon essai gratuit se termine le {date}.",
            "(compte gratuit)",
            "compte gratuit",
            "en essai gratuit",
        ),
        "enterprise": (
            "Nous sommes une école hôtelière avec {seats} élèves sur une licence entreprise.",
            "Je gère le compte équipe EuroChef+ de notre groupe de restaurants.",
            "Nos {seats} cuisiniers chez {org} utilisent EuroChef+ pour la formation.",
            "Je suis l'administrateur de notre licence entreprise ({seats} postes).",
            "Cela concerne toutes les cuisines de notre chaîne d'hôtels.",
            "Nous utilisons EuroChef+ en cours dans notre école de cuisine à {city}.",
            "Notre compte professionnel couvre {n} restaurants.",
            "Je vous écris au nom de {org}, nous avons une licence Enterprise.",
            "compte entreprise, {seats} utilisateurs",
            "En tant que responsable formation chez {org}, je gère nos licences EuroChef+.",
            "Nos apprentis en CAP cuisine travaillent tous avec votre plateforme.",
            "licence pro, {seats} postes",
            "compte de notre école hôtelière",
        ),
        "frustrated": (
            "C'est vraiment pénible.",
            "J'en ai marre.",
            "C'est la troisième fois que je vous contacte pour ça.",
            "Franchement, je suis très déçu.",
            "C'est agaçant à la fin.",
            "Pourquoi ça arrive tout le temps ?",
            "J'ai déjà perdu toute une soirée là-dessus.",
            "Pas contente du tout.",
            "pfff, encore.",
            "Je m'attendais à beaucoup mieux.",
            "Ça commence à bien faire.",
            "Ça dure depuis des semaines et personne ne réagit.",
            "trop pénible",
            "encore ?!",
        ),
        "aggressive": (
            "C'est une ARNAQUE, ni plus ni moins.",
            "RÉPAREZ ÇA ou je mets un avis sur Trustpilot pour dire à tout le monde à quel point vous êtes nuls.",
            "Votre service client est complètement incompétent.",
            "Je vais faire opposition auprès de ma banque et porter plainte.",
            "Si ce n'est pas réglé, mon avocat vous contactera.",
            "Quelle boîte de clowns. Lamentable.",
            "Arrêtez de vous foutre de moi.",
            "PIRE SERVICE DE TOUS LES TEMPS. Je vais le faire savoir partout.",
            "Pas la peine de m'envoyer encore une réponse copiée-collée, bande d'incapables.",
            "Je vais saisir l'UFC-Que Choisir, c'est du vol.",
            "Vous vous moquez du monde ou quoi ??",
            "NULS",
            "remboursez ou je fais opposition",
        ),
        "confused": (
            "Je ne comprends pas ce qui se passe.",
            "Je suis un peu perdue, quelqu'un peut m'expliquer comment ça marche ?",
            "Est-ce que je fais quelque chose de travers ?",
            "Je ne sais pas où trouver ça dans l'appli.",
            "Qu'est-ce que ça veut dire exactement ?",
            "Je ne comprends vraiment pas, le site dit une chose et l'appli une autre.",
            "C'est normal ou le problème vient de chez moi ?",
            "Désolé si la question est bête.",
            "J'ai lu la FAQ mais je ne comprends toujours pas.",
            "Pouvez-vous m'expliquer ce que je dois faire ?",
            "?? je comprends rien",
            "je comprends pas",
            "hein ??",
        ),
        "satisfied": (
            "J'adore EuroChef+, les émissions sont géniales.",
            "Merci beaucoup pour votre super service !",
            "Les cours de {chef} sont excellents, toute la famille adore.",
            "Sinon super appli, continuez comme ça !",
            "Votre équipe m'a aidé très vite la dernière fois, merci.",
            "Grande fan de la plateforme, vraiment.",
            "L'épisode « {dish} » était top.",
            "Très content de l'appli dans l'ensemble 👍",
            "Merci mille fois, vous êtes au top.",
            "J'ai appris énormément grâce à vos cours.",
            "La meilleure appli de cuisine que j'aie utilisée.",
            "j'adore l'appli",
            "super émissions sinon",
        ),
    },
    "de": {
        "technical_issue": (
            "Das Video bleibt bei {show} auf meinem {device} ständig hängen.",
            "Die App stürzt jedes Mal ab, wenn ich das Rezept für {dish} öffne.",
            "Ich bekomme den Fehler {error}, sobald ich etwas abspielen will.",
            "Der Stream laggt total seit gestern Abend.",
            "Seit dem letzten Update startet die App auf meinem {device} nicht mehr, nur schwarzer Bildschirm.",
            "Der Live-Kurs mit {chef} hat dauernd gebuffert und dann ist der Stream abgebrochen.",
            "Ton und Bild sind nicht synchron.",
            "Die Qualität bleibt bei 480p hängen, obwohl mein Internet schnell ist.",
            "Ich kann nicht auf meinen Chromecast streamen, das Cast-Symbol wird gar nicht angezeigt.",
            "Die Untertitel bei {show} laufen nicht synchron.",
            "app crasht auf {device}",
            "Downloads brechen bei 99 % ab.",
            "Auf meinem {device} gibt es gar keinen Ton, andere Apps funktionieren.",
            "Es kommt immer die Meldung „{errmsg}“, wenn ich eine Folge starten will.",
            "Jede Folge von {show} lädt und lädt, das Rad dreht sich endlos.",
            "geht nicht, fehler {error}",
            "Könnt ihr mal checken, warum die App auf meinem {device} ständig einfriert?",
            "Können Sie prüfen, warum die Wiedergabe auf meinem {device} immer abbricht?",
            "Video lädt nicht",
            "kein Ton auf {device}",
            "schwarzer Bildschirm nach Update",
        ),
        "billing": (
            "Mir wurden diesen Monat zweimal {amount} abgebucht.",
            "Können Sie mir bitte die Rechnung für meine letzte Zahlung schicken? Ich finde sie nicht im Konto.",
            "Meine Karte wurde abgelehnt, aber das Geld wurde trotzdem abgebucht.",
            "Ich hätte gern die {amount} vom {date} zurückerstattet.",
            "Warum ist der Preis ohne Ankündigung gestiegen?",
            "Ich möchte die Zahlungsart von Kreditkarte auf PayPal umstellen.",
            "Auf meinem Kontoauszug steht eine Abbuchung von EuroChef+ über {amount}, die ich nicht zuordnen kann.",
            "Auf der Rechnung {invoice} steht ein falscher Betrag.",
            "Ich sehe {n} Abbuchungen von EuroChef+ in einem Monat.",
            "Der Gutscheincode {promo} wurde nicht berücksichtigt.",
            "Bitte ändert die Rechnungsadresse, ich bin nach {city} umgezogen.",
            "doppelt abgebucht, {amount} zweimal",
            "Ich habe auf jährliche Zahlung umgestellt, werde aber immer noch monatlich belastet.",
            "Die Zahlung ist fehlgeschlagen und jetzt soll ich nochmal {amount} zahlen.",
            "Wofür ist die Abbuchung über {amount} vom {date}?",
            "Erstattung bitte, Bestellnummer {order}",
            "Kannst du mir sagen, warum meine Lastschrift zurückgegangen ist?",
            "doppelt bezahlt",
            "wo ist meine Rechnung?",
            "falscher Betrag auf Rechnung {invoice}",
        ),
        "account_access": (
            "Ich kann mich nicht mehr einloggen, angeblich ist das Passwort falsch, obwohl ich es gerade "
            "zurückgesetzt habe.",
            "Die E-Mail zum Zurücksetzen des Passworts kommt nie an, den Spam-Ordner habe ich schon geprüft.",
            "Mein Account ist nach zu vielen Login-Versuchen gesperrt.",
            "Ich glaube, mein Konto wurde gehackt, jemand hat meine E-Mail-Adresse geändert.",
            "Ich bekomme den Bestätigungscode per SMS nicht.",
            "Mein Profil ist verschwunden und meine gespeicherten Rezepte sind weg.",
            "Anmelden mit Apple funktioniert nicht mehr, ich lande immer wieder auf der Login-Seite.",
            "Ich habe keinen Zugriff mehr auf die E-Mail-Adresse, mit der ich mich registriert habe. "
            "Wie komme ich wieder in mein Konto?",
            "Auf meinem {device} werde ich alle paar Minuten ausgeloggt.",
            "mein Account ist gelocked",
            "Es heißt „Konto nicht gefunden“, dabei nutze ich EuroChef+ seit Jahren.",
            "Jemand anderes nutzt mein Profil, im Verlauf sind Sendungen, die ich nie gesehen habe.",
            "Der Bestätigungslink ist abgelaufen und ich kann keinen neuen anfordern.",
            "Ich habe eine neue Handynummer und bekomme den Login-Code nicht mehr.",
            "Login auf {device} geht nicht, Fehler {error}.",
            "Kannst du mein Passwort zurücksetzen? Ich komm nicht mehr rein.",
            "Konto gesperrt",
            "Passwort-Reset geht nicht",
            "2FA-Code kommt nicht",
        ),
        "content_request": (
            "Könntet ihr mehr Rezepte aus {country} aufnehmen? Da gibt es fast nichts.",
            "Ist eine Sendung mit {chef} geplant? Das wäre toll.",
            "Bitte fügt deutsche Untertitel für {show} hinzu.",
            "Ich suche ein Rezept für {dish}, finde aber keins auf der Plattform.",
            "Gibt es eine neue Staffel von {show}?",
            "Mehr vegetarische und vegane Inhalte wären super.",
            "Könnten Sie {show} wieder ins Programm nehmen? Die Sendung ist verschwunden.",
            "Habt ihr Kurse zum Sauerteigbrot-Backen? Eine richtige Reihe dazu wäre klasse.",
            "Wäre es möglich, die Kurse von {chef} auf Deutsch zu synchronisieren?",
            "Bitte mehr glutenfreie Rezepte!",
            "Meine Kinder kochen total gern, wie wäre es mit einer Kochsendung für Kinder?",
            "Ich würde gern eine Masterclass zu {dish} von einem echten Profi sehen.",
            "Bei {show} fehlen die niederländischen Untertitel, können Sie die ergänzen?",
            "Wunsch: Video-Rezept für {dish}",
            "Mehr schnelle Feierabendgerichte bitte, max. 20 Minuten.",
            "Gibt es Pläne für eine Reihe über regionale Küche aus {country}?",
            "bitte mehr Rezepte aus {country}",
            "neue Staffel {show}?",
        ),
        "feature_request": (
            "Es wäre super, wenn man die Zutaten direkt auf eine Einkaufsliste setzen könnte.",
            "Bitte baut einen Dark Mode ein, die App ist abends sehr hell.",
            "Könnten Sie Timer direkt in die Rezeptschritte einbauen?",
            "Ich hätte gern die Möglichkeit, Rezepte auf die Personenzahl umzurechnen.",
            "Ein Wochenplaner für Mahlzeiten wäre echt praktisch.",
            "Eine Umrechnung von Cups in Gramm wäre hilfreich.",
            "Es wäre gut, wenn der Bildschirm beim Kochen nicht in den Standby geht.",
            "Lasst uns Rezepte in eigenen Ordnern speichern, bitte.",
            "Wie wäre es mit Sprachsteuerung? Mit Mehl an den Händen will ich den Bildschirm nicht anfassen.",
            "Nährwertangaben zu jedem Rezept wären ein Plus.",
            "Bitte ermöglicht es, Rezepte zu drucken oder als PDF zu exportieren.",
            "Vorschlag: Rezepte bewerten und kommentieren können",
            "Ein Offline-Modus für Rezepte wäre praktisch, das WLAN in meiner Küche ist schlecht.",
            "Könnt ihr eine Einstellung für die Abspielgeschwindigkeit der Videos hinzufügen?",
            "Feature-Idee: Rezepte danach filtern, was im Kühlschrank ist.",
            "Ein Schritt-für-Schritt-Modus mit großer Schrift auf meinem {device} wäre schön.",
            "Dark Mode bitte",
            "Einkaufsliste in der App wäre cool",
        ),
        "cancellation": (
            "Ich möchte mein Abo kündigen.",
            "Bitte verlängern Sie mein Abonnement zum Monatsende nicht.",
            "Wie kann ich kündigen? Ich finde die Option nirgends in der App.",
            "Bitte löschen Sie mein Konto und alle meine Daten.",
            "Ich möchte meine Mitgliedschaft zum {date} beenden.",
            "Ich habe letzten Monat gekündigt, aber das Abo ist immer noch aktiv.",
            "kündigung bitte",
            "Ich ziehe ins Ausland und brauche EuroChef+ nicht mehr, bitte beendet mein Abo.",
            "Können Sie mir die Kündigung bitte schriftlich bestätigen?",
            "Hiermit kündige ich fristgerecht zum nächstmöglichen Zeitpunkt.",
            "Wir haben beschlossen, EuroChef+ nicht mehr zu nutzen, bitte schließen Sie das Konto.",
            "Bitte kündige mein Abo vor dem nächsten Verlängerungsdatum.",
            "Ich will nach diesem Monat nicht weitermachen, wie schalte ich die automatische Verlängerung aus?",
            "Ich möchte mein EuroChef+-Konto endgültig schließen.",
            "Hiermit widerrufe ich meinen Vertrag.",
            "Abo kündigen",
            "wie kündige ich",
            "bitte Abo beenden",
        ),
        "urgent": (
            "Bitte so schnell wie möglich beheben.",
            "Unser Live-Kurs beginnt {soon}, das muss jetzt funktionieren!",
            "DRINGEND: Ich brauche heute noch eine Lösung.",
            "Ich brauche bitte heute noch eine Antwort.",
            "Heute Abend kommen Gäste und ich brauche das Rezept sofort.",
            "asap bitte!!",
            "Bitte rufen Sie mich umgehend zurück.",
            "Das ist zeitkritisch, bitte mit Priorität bearbeiten.",
            "Ich habe morgen früh eine Kochprüfung und brauche vorher Zugang.",
            "Jede Stunde zählt, bitte beeilt euch.",
            "Brauche sofort Hilfe",
            "Das kann nicht bis Montag warten, bitte eskalieren.",
            "EILT!",
            "bitte heute noch",
        ),
        "low_priority": (
            "Hat keine Eile.",
            "Wann immer ihr Zeit habt, kein Stress.",
            "Nur eine Kleinigkeit, überhaupt nicht dringend.",
            "Ist nicht schlimm, wollte es nur mal erwähnen.",
            "Nicht dringend, bin nur neugierig.",
            "Lassen Sie sich ruhig Zeit.",
            "Keine Eile, nur zur Info.",
            "Eine schnelle Antwort ist nicht nötig.",
            "Nur so eine Idee, ganz ohne Druck.",
            "Wenn ihr irgendwann mal dazu kommt, wäre das nett.",
            "Nicht wichtig, aber ich wollte mal fragen.",
            "eilt nicht",
            "kein Stress, nicht dringend",
        ),
        "premium_user": (
            "Ich bin Premium-Abonnent.",
            "Ich zahle jeden Monat {premium_price} dafür.",
            "Ich bin seit {year} Premium-Mitglied.",
            "Ich habe das Premium-Abo.",
            "premium kunde",
            "Ich habe letzten Monat auf Premium upgegradet.",
            "Mein Premium-Abo verlängert sich monatlich.",
            "Ich habe den Tarif für {premium_price}.",
            "Wir haben Premium seit {n} Jahren.",
            "Ich zahle Premium extra wegen der HD-Videos.",
            "(Premium-Konto)",
            "Ich bin Premium-Kundin, das müsste also inklusive sein.",
            "Premium-Kunde",
            "zahle für Premium",
        ),
        "free_user": (
            "Ich nutze die kostenlose Version.",
            "Ich habe nur einen Gratis-Account.",
            "Ich bin gerade im Probemonat.",
            "Ich habe noch nichts bezahlt, ich bin im Free-Tarif.",
            "free user",
            "Ich habe mich gestern für die 7-Tage-Testversion angemeldet.",
            "Ich bin noch im kostenlosen Tarif und überlege, upzugraden.",
            "Mit dem Gratis-Konto kann ich nur ein paar Folgen schauen, das ist okay.",
            "Ich habe kein bezahltes Abo, nur das kostenlose.",
            "Mein Testzeitraum endet am {date}.",
            "(kostenloses Konto)",
            "Gratis-Konto",
            "bin im Probeabo",
        ),
        "enterprise": (
            "Wir sind eine Hotelfachschule mit {seats} Schülern auf einer Business-Lizenz.",
            "Ich verwalte den EuroChef+-Teamaccount unserer Restaurantgruppe.",
            "Unsere {seats} Köche bei {org} nutzen EuroChef+ für Schulungen.",
            "Ich bin Admin unserer Firmenlizenz ({seats} Plätze).",
            "Das betrifft alle Küchen unserer Hotelkette.",
            "Wir setzen EuroChef+ im Unterricht unserer Kochschule in {city} ein.",
            "Unser Business-Konto umfasst {n} Restaurants.",
            "Ich schreibe im Auftrag von {org}, wir haben eine Enterprise-Lizenz.",
            "Firmenkonto, {seats} Nutzer",
            "Als Ausbildungsleiter bei {org} betreue ich unsere EuroChef+-Lizenzen.",
            "Unsere Azubis in der Küche lernen alle mit eurer Plattform.",
            "Firmenlizenz, {seats} Plätze",
            "Konto unserer Kochschule",
        ),
        "frustrated": (
            "Das ist echt frustrierend.",
            "Ich habe die Nase voll.",
            "Ich melde mich jetzt schon zum dritten Mal deswegen.",
            "Ehrlich gesagt bin ich sehr enttäuscht.",
            "Das nervt total.",
            "Warum passiert das ständig?",
            "Ich habe schon einen ganzen Abend damit verschwendet.",
            "Ich bin überhaupt nicht zufrieden.",
            "ugh, schon wieder.",
            "Ich hätte deutlich mehr erwartet.",
            "Langsam reicht es mir.",
            "Das geht jetzt seit Wochen so und niemand kümmert sich.",
            "nervig",
            "schon wieder?!",
        ),
        "aggressive": (
            "Das ist BETRUG, nichts anderes.",
            "REPARIERT DAS ENDLICH, sonst schreibe ich eine Bewertung auf Trustpilot, damit jeder sieht, "
            "wie unfähig ihr seid.",
            "Ihr Kundenservice ist völlig inkompetent.",
            "Ich lasse die Zahlung bei meiner Bank zurückbuchen und erstatte Anzeige.",
            "Wenn das nicht geklärt wird, schalte ich meinen Anwalt ein.",
            "Was für ein Saftladen. Einfach nur peinlich.",
            "Hört auf, mich zu verarschen.",
            "SCHLECHTESTER SERVICE ÜBERHAUPT. Das erzähle ich jedem.",
            "Spart euch eure Copy-Paste-Antworten, ihr Idioten.",
            "Ich gehe zur Verbraucherzentrale, das ist Abzocke.",
            "Seid ihr eigentlich völlig bescheuert??",
            "UNFÄHIG",
            "Geld zurück oder Rückbuchung",
        ),
        "confused": (
            "Ich verstehe nicht, was da los ist.",
            "Ich bin etwas verwirrt, kann mir jemand erklären, wie das funktioniert?",
            "Mache ich irgendwas falsch?",
            "Ich weiß nicht, wo ich das in der App finde.",
            "Was bedeutet das überhaupt?",
            "Ich blicke da echt nicht durch, auf der Website steht etwas anderes als in der App.",
            "Ist das normal oder liegt das an mir?",
            "Sorry, falls das eine dumme Frage ist.",
            "Ich habe die FAQ gelesen, verstehe es aber immer noch nicht.",
            "Können Sie mir erklären, was ich tun soll?",
            "?? keine Ahnung, was passiert ist",
            "versteh ich nicht",
            "hä??",
        ),
        "satisfied": (
            "Ich liebe EuroChef+, die Sendungen sind großartig.",
            "Vielen Dank für den tollen Service bisher!",
            "Die Kurse von {chef} sind super, die ganze Familie ist begeistert.",
            "Ansonsten tolle App, weiter so!",
            "Ihr Support hat mir letztes Mal sehr schnell geholfen, danke.",
            "Bin ein großer Fan der Plattform, wirklich.",
            "Die Folge über {dish} war fantastisch.",
            "Insgesamt sehr zufrieden mit der App 👍",
            "Tausend Dank, ihr seid klasse.",
            "Ich habe durch eure Kurse so viel gelernt.",
            "Die beste Koch-App, die ich je hatte.",
            "liebe die App",
            "tolle Sendungen übrigens",
        ),
    },
    "nl": {
        "technical_issue": (
            "De video blijft halverwege {show} hangen op mijn {device}.",
            "De app crasht elke keer als ik het recept voor {dish} open.",
            "Ik krijg foutcode {error} zodra ik iets wil afspelen.",
            "De stream hapert de hele tijd sinds gisteravond.",
            "Sinds de laatste update start de app niet meer op mijn {device}, alleen een zwart scherm.",
            "De live kookles met {chef} bleef bufferen en toen viel de stream helemaal weg.",
            "Beeld en geluid lopen niet gelijk.",
            "De kwaliteit blijft op 480p hangen terwijl mijn internet prima is.",
            "Ik kan niet casten naar mijn Chromecast, het cast-icoon verschijnt niet eens.",
            "De ondertiteling bij {show} loopt niet synchroon.",
            "app crasht op {device}",
            "Downloads stoppen steeds bij 99%.",
            "Geen geluid op mijn {device}, andere apps doen het wel.",
            "Ik krijg steeds de melding '{errmsg}' als ik een aflevering wil starten.",
            "Kunnen jullie kijken waarom elke aflevering van {show} blijft laden?",
            "werkt niet, error {error}",
            "Na het updaten blijft de app op mijn {device} hangen op het laadscherm.",
            "video laadt niet",
            "geen geluid op {device}",
            "zwart scherm na update",
        ),
        "billing": (
            "Er is deze maand twee keer {amount} afgeschreven.",
            "Kunnen jullie mij de factuur van mijn laatste betaling sturen? Ik kan hem niet vinden in mijn account.",
            "Mijn kaart werd geweigerd maar het geld is wel van mijn rekening gegaan.",
            "Ik wil graag de {amount} van {date} terug.",
            "Waarom is de prijs zonder aankondiging omhoog gegaan?",
            "Ik wil betalen via iDEAL in plaats van met mijn creditcard.",
            "Ik zie een afschrijving van {amount} van EuroChef+ die ik niet herken.",
            "Op factuur {invoice} staat een verkeerd bedrag.",
            "Op mijn bankafschrift staan {n} betalingen aan EuroChef+ in één maand.",
            "De kortingscode {promo} is niet verwerkt.",
            "Willen jullie mijn factuuradres aanpassen? Ik ben verhuisd naar {city}.",
            "dubbel afgeschreven, {amount} 2x",
            "Ik ben overgestapt op jaarlijks betalen maar er wordt nog steeds maandelijks afgeschreven.",
            "De betaling is mislukt en nu moet ik opnieuw {amount} betalen.",
            "Waar is de afschrijving van {amount} op {date} voor?",
            "geld terug graag, ordernummer {order}",
            "dubbel betaald",
            "waar is mijn factuur?",
            "verkeerd bedrag op factuur {invoice}",
        ),
        "account_access": (
            "Ik kan niet meer inloggen, er staat dat mijn wachtwoord fout is maar ik heb het net gereset.",
            "De mail om mijn wachtwoord te resetten komt niet aan, ook niet in mijn spam.",
            "Mijn account is geblokkeerd na te veel inlogpogingen.",
            "Ik denk dat mijn account gehackt is, iemand heeft mijn e-mailadres veranderd.",
            "Ik krijg de verificatiecode via sms niet binnen.",
            "Mijn profiel is verdwenen, inclusief al mijn opgeslagen recepten.",
            "Inloggen met Apple werkt niet meer, ik kom steeds terug op de loginpagina.",
            "Ik heb geen toegang meer tot het e-mailadres waarmee ik me heb aangemeld. Hoe kom ik in mijn account?",
            "Op mijn {device} word ik om de paar minuten uitgelogd.",
            "kan niet inloggen sinds gisteren",
            "Ik krijg 'account niet gevonden' terwijl ik EuroChef+ al jaren gebruik.",
            "Iemand anders gebruikt mijn profiel, er staan programma's in mijn kijkgeschiedenis die ik nooit zag.",
            "De verificatielink is verlopen en ik kan geen nieuwe aanvragen.",
            "Ik heb een nieuw telefoonnummer en krijg de inlogcode niet meer.",
            "Inloggen op {device} lukt niet, foutmelding {error}.",
            "mijn account is gelockt, wachtwoord reset werkt niet",
            "account geblokkeerd",
            "wachtwoord resetten lukt niet",
            "2FA-code komt niet",
        ),
        "content_request": (
            "Kunnen jullie meer recepten uit {country} toevoegen? Er is bijna niks.",
            "Komt er ooit een programma met {chef}? Zou ik geweldig vinden.",
            "Graag Nederlandse ondertiteling bij {show}.",
            "Ik zoek een recept voor {dish} maar kan het nergens op het platform vinden.",
            "Komt er een nieuw seizoen van {show}?",
            "Meer vegetarische en vegan content zou top zijn.",
            "Kunnen jullie {show} terugzetten? Het is uit het aanbod verdwenen.",
            "Hebben jullie lessen over zuurdesembrood bakken? Een echte serie daarover zou mooi zijn.",
            "Kunnen de lessen van {chef} ook in het Nederlands ingesproken worden?",
            "Meer glutenvrije recepten graag!",
            "Mijn kinderen koken graag, komt er een kookprogramma voor kids?",
            "Ik zou graag een masterclass over {dish} zien van een echte chef.",
            "Bij {show} ontbreken de Franse ondertitels, kunnen jullie die toevoegen?",
            "verzoek: videorecept {dish}",
            "Meer snelle doordeweekse gerechten graag, max 20 minuten.",
            "Zijn er plannen voor een serie over de regionale keuken van {country}?",
            "graag meer recepten uit {country}",
            "nieuw seizoen {show}?",
        ),
        "feature_request": (
            "Het zou handig zijn als ik ingrediënten direct op een boodschappenlijstje kon zetten.",
            "Graag een dark mode, de app is 's avonds erg fel.",
            "Kunnen jullie timers toevoegen bij de stappen van een recept?",
            "Ik zou recepten graag kunnen omrekenen naar het aantal personen.",
            "Een weekmenu-planner zou echt handig zijn.",
            "Een omrekening van cups naar grammen zou fijn zijn.",
            "Het zou fijn zijn als het scherm niet op slot gaat terwijl ik een recept volg.",
            "Laat ons recepten in eigen mapjes opslaan, alsjeblieft.",
            "Wat dacht je van spraakbesturing? Met meel aan je handen wil je het scherm niet aanraken.",
            "Voedingswaarden bij elk recept zouden een mooie toevoeging zijn.",
            "Maak het alsjeblieft mogelijk om recepten te printen of als PDF te exporteren.",
            "suggestie: recepten kunnen beoordelen en er een reactie bij zetten",
            "Een offline modus voor recepten zou handig zijn, de wifi in mijn keuken is slecht.",
            "Kunnen jullie een optie toevoegen om de afspeelsnelheid van video's aan te passen?",
            "Feature-idee: recepten filteren op wat er in mijn koelkast ligt.",
            "Een stap-voor-stap modus met grote letters op mijn {device} zou mooi zijn.",
            "dark mode graag",
            "boodschappenlijstje in de app zou chill zijn",
        ),
        "cancellation": (
            "Ik wil mijn abonnement opzeggen.",
            "Graag mijn abonnement niet verlengen aan het einde van deze maand.",
            "Hoe zeg ik op? Ik kan de optie nergens vinden in de app.",
            "Verwijder alsjeblieft mijn account en al mijn gegevens.",
            "Ik wil mijn lidmaatschap per {date} beëindigen.",
            "Ik heb vorige maand opgezegd maar het abonnement staat nog steeds actief.",
            "opzeggen graag",
            "Ik verhuis naar het buitenland en gebruik EuroChef+ niet meer, dus stop mijn abonnement graag.",
            "Kunnen jullie bevestigen dat mijn abonnement is opgezegd?",
            "Ik wil per direct stoppen met mijn abonnement.",
            "We hebben besloten te stoppen met EuroChef+, graag het account sluiten.",
            "Zeg mijn abonnement op vóór de volgende verlengingsdatum, aub.",
            "Ik wil na deze maand niet verder, hoe zet ik automatisch verlengen uit?",
            "Ik wil mijn EuroChef+ account definitief opheffen.",
            "Graag opzeggen en mijn profiel verwijderen.",
            "abonnement opzeggen",
            "hoe zeg ik op",
            "stop mijn abonnement aub",
        ),
        "urgent": (
            "Graag zo snel mogelijk oplossen.",
            "Onze live les begint {soon}, dit moet nu werken!",
            "DRINGEND: ik heb vandaag nog een oplossing nodig.",
            "Ik heb vandaag nog een antwoord nodig, alsjeblieft.",
            "Vanavond komen er gasten en ik heb het recept nu meteen nodig.",
            "asap aub!!",
            "Bel me alstublieft direct terug.",
            "Dit is tijdkritisch, graag met voorrang oppakken.",
            "Ik heb morgenochtend een kookexamen en moet er voor die tijd bij kunnen.",
            "Elk uur telt, schiet alsjeblieft op.",
            "Heb nu meteen hulp nodig",
            "Dit kan niet wachten tot maandag, graag escaleren.",
            "SPOED",
            "graag vandaag nog",
        ),
        "low_priority": (
            "Geen haast.",
            "Wanneer jullie tijd hebben, geen stress.",
            "Klein dingetje, helemaal niet dringend.",
            "Het is niet erg, wilde het alleen even melden.",
            "Niet dringend, ben gewoon benieuwd.",
            "Neem gerust de tijd.",
            "Geen spoed, alleen ter info.",
            "Een snel antwoord is niet nodig.",
            "Gewoon een ideetje, geen druk.",
            "Als jullie er ooit aan toe komen, zou dat leuk zijn.",
            "Niet belangrijk, maar ik vroeg het me af.",
            "geen haast hoor",
            "heeft geen prioriteit",
        ),
        "premium_user": (
            "Ik ben Premium-abonnee.",
            "Ik betaal elke maand {premium_price} hiervoor.",
            "Ik ben al Premium-lid sinds {year}.",
            "Ik heb het Premium-abonnement.",
            "premium gebruiker",
            "Ik ben vorige maand naar Premium overgestapt.",
            "Mijn Premium-abonnement wordt elke maand verlengd.",
            "Ik heb het abonnement van {premium_price}.",
            "We hebben al {n} jaar Premium.",
            "Ik betaal juist voor Premium vanwege de HD-video's.",
            "(Premium account)",
            "Ik zit op Premium, dus dit hoort erbij te zitten.",
            "premium lid",
            "betaal voor premium",
        ),
        "free_user": (
            "Ik gebruik de gratis versie.",
            "Ik heb alleen een gratis account.",
            "Ik zit nu in de proefperiode.",
            "Ik heb nog niks betaald, ik zit op het gratis abonnement.",
            "gratis gebruiker",
            "Ik heb me gisteren aangemeld voor de proefperiode van 7 dagen.",
            "Ik zit nog op de gratis versie en twijfel of ik ga upgraden.",
            "Met het gratis account kan ik maar een paar afleveringen kijken, dat is prima.",
            "Ik heb geen betaald abonnement, alleen het gratis account.",
            "Mijn proefperiode loopt af op {date}.",
            "(free account)",
            "gratis account",
            "zit in proefperiode",
        ),
        "enterprise": (
            "Wij zijn een hotelschool met {seats} studenten op een zakelijke licentie.",
            "Ik beheer het EuroChef+ teamaccount van onze restaurantgroep.",
            "Onze {seats} koks bij {org} gebruiken EuroChef+ voor trainingen.",
            "Ik ben beheerder van onze bedrijfslicentie ({seats} plekken).",
            "Dit geldt voor alle keukens van onze hotelketen.",
            "We gebruiken EuroChef+ in de lessen van onze koksopleiding in {city}.",
            "Ons zakelijke account omvat {n} restaurants.",
            "Ik schrijf namens {org}, wij hebben een Enterprise-licentie.",
            "zakelijk account, {seats} gebruikers",
            "Als opleidingscoördinator bij {org} beheer ik onze EuroChef+ licenties.",
            "Al onze leerlingen van de koksopleiding werken met jullie platform.",
            "zakelijke licentie, {seats} plekken",
            "account van onze koksschool",
        ),
        "frustrated": (
            "Dit is echt frustrerend.",
            "Ik ben het zat.",
            "Dit is al de derde keer dat ik hierover contact opneem.",
            "Eerlijk gezegd ben ik erg teleurgesteld.",
            "Zo irritant.",
            "Waarom gebeurt dit steeds?",
            "Ik ben er al een hele avond mee bezig geweest.",
            "Ik ben er helemaal niet blij mee.",
            "pff, alweer.",
            "Ik had echt meer verwacht.",
            "Ik begin het nu wel beu te worden.",
            "Dit speelt al weken en niemand doet er iets aan.",
            "irritant",
            "alweer?!",
        ),
        "aggressive": (
            "Dit is gewoon OPLICHTING.",
            "LOS HET NU OP of ik zet een review op Trustpilot zodat iedereen weet hoe waardeloos jullie zijn.",
            "Jullie klantenservice is compleet incompetent.",
            "Ik ga de betaling terugboeken via mijn bank en doe aangifte.",
            "Als dit niet opgelost wordt, schakel ik mijn advocaat in.",
            "Wat een prutsbedrijf. Echt waardeloos.",
            "Hou op met me voor de gek te houden.",
            "SLECHTSTE SERVICE OOIT. Ik ga het aan iedereen vertellen.",
            "Bespaar me jullie copy-paste antwoorden, idioten.",
            "Ik stap naar de Consumentenbond, dit is gewoon diefstal.",
            "Zijn jullie nou helemaal gek geworden??",
            "WAARDELOOS",
            "geld terug of ik boek het terug",
        ),
        "confused": (
            "Ik snap niet wat er aan de hand is.",
            "Ik ben een beetje in de war, kan iemand uitleggen hoe dit werkt?",
            "Doe ik iets verkeerd?",
            "Ik weet niet waar ik dit in de app kan vinden.",
            "Wat betekent dit eigenlijk?",
            "Ik begrijp er echt niks van, op de website staat iets anders dan in de app.",
            "Is dit normaal of ligt het aan mij?",
            "Sorry als dit een domme vraag is.",
            "Ik heb de FAQ gelezen maar snap het nog steeds niet.",
            "Kunnen jullie uitleggen wat ik moet doen?",
            "?? geen idee wat er gebeurd is",
            "snap het niet",
            "huh??",
        ),
        "satisfied": (
            "Ik ben gek op EuroChef+, de programma's zijn geweldig.",
            "Heel erg bedankt voor de top service tot nu toe!",
            "De lessen van {chef} zijn super, het hele gezin is fan.",
            "Verder een toffe app, ga zo door!",
            "Jullie support heeft me de vorige keer heel snel geholpen, dank daarvoor.",
            "Echt een grote fan van het platform.",
            "De aflevering over {dish} was fantastisch.",
            "Over het algemeen heel tevreden met de app 👍",
            "Super bedankt, jullie zijn top.",
            "Ik heb zoveel geleerd van jullie lessen.",
            "Beste kookapp die ik ooit heb gehad.",
            "top app verder",
            "love de programma's",
        ),
    },
}

# Label-free material, shared by every split. Fillers must carry no cue for any label.
GREETINGS: dict[str, tuple[str, ...]] = {
    "en": ("Hi,", "Hello,", "Hi there,", "Dear EuroChef+ team,", "Hello support,", "Good morning,", "Hey,",
           "Dear Sir or Madam,", "Hi team,", "Good evening,"),
    "fr": ("Bonjour,", "Bonjour à toute l'équipe,", "Madame, Monsieur,", "Bonsoir,", "Salut,", "Hello,",
           "Bonjour l'équipe EuroChef+,", "Coucou,", "Bonjour à vous,"),
    "de": ("Hallo,", "Sehr geehrte Damen und Herren,", "Guten Tag,", "Hi,", "Hallo zusammen,",
           "Liebes EuroChef+-Team,", "Moin,", "Servus,", "Guten Morgen,", "Hallo liebes Support-Team,"),
    "nl": ("Hallo,", "Beste EuroChef+ team,", "Goedemiddag,", "Hoi,", "Geachte heer/mevrouw,", "Goedemorgen,",
           "Hey,", "Dag,", "Hallo allemaal,", "Beste,"),
}
SIGNOFFS: dict[str, tuple[str, ...]] = {
    "en": ("Thanks,", "Thank you,", "Best regards,", "Kind regards,", "Cheers,", "Regards,", "Thanks in advance,",
           "Best,"),
    "fr": ("Cordialement,", "Merci d'avance,", "Bien cordialement,", "Bonne journée,", "Merci,",
           "Je vous remercie par avance,", "Bien à vous,", "Bonne soirée,"),
    "de": ("Viele Grüße,", "Mit freundlichen Grüßen,", "Danke und Gruß,", "LG,", "Beste Grüße,",
           "Vielen Dank im Voraus,", "Gruß,", "MfG,"),
    "nl": ("Met vriendelijke groet,", "Groetjes,", "Alvast bedankt,", "Groet,", "Mvg,", "Bedankt,",
           "Vriendelijke groeten,", "Gr.,"),
}
SENT_FROM: dict[str, tuple[str, ...]] = {
    "en": ("Sent from my iPhone", "Sent from my Galaxy", "Sent from Outlook for Android"),
    "fr": ("Envoyé de mon iPhone", "Envoyé depuis mon smartphone Samsung"),
    "de": ("Von meinem iPhone gesendet", "Gesendet von meinem Smartphone"),
    "nl": ("Verstuurd vanaf mijn iPhone", "Verzonden vanaf mijn Samsung"),
}
FILLERS: dict[str, tuple[str, ...]] = {
    "en": (
        "I mostly watch at the weekend.",
        "My partner and I cook along with the shows most evenings.",
        "My account email is {email}.",
        "I live in {city}.",
        "I was trying to make {dish} for my family.",
        "This is the first time I'm writing to support.",
        "Writing from my phone, sorry for any typos.",
        "Let me know if you need more details.",
        "My username is {username}.",
        "I've attached a screenshot.",
        "I cook a lot at home.",
        "A friend recommended EuroChef+ to me.",
    ),
    "fr": (
        "Je regarde surtout le week-end.",
        "Je cuisine avec mon conjoint presque tous les soirs.",
        "Mon adresse e-mail est {email}.",
        "J'habite à {city}.",
        "J'essayais de faire la recette « {dish} » pour ma famille.",
        "C'est la première fois que j'écris au support.",
        "Je vous écris depuis mon téléphone, désolée pour les fautes.",
        "N'hésitez pas si vous avez besoin de plus d'infos.",
        "Mon identifiant est {username}.",
        "Je joins une capture d'écran.",
        "Je cuisine beaucoup à la maison.",
        "C'est une amie qui m'a conseillé EuroChef+.",
    ),
    "de": (
        "Ich schaue meistens am Wochenende.",
        "Mein Partner und ich kochen fast jeden Abend mit.",
        "Meine E-Mail-Adresse ist {email}.",
        "Ich wohne in {city}.",
        "Ich wollte gerade {dish} für meine Familie kochen.",
        "Ich schreibe zum ersten Mal an den Support.",
        "Ich schreibe vom Handy, sorry für Tippfehler.",
        "Melden Sie sich gern, falls Sie mehr Infos brauchen.",
        "Mein Benutzername ist {username}.",
        "Screenshot anbei.",
        "Ich koche viel zu Hause.",
        "Eine Freundin hat mir EuroChef+ empfohlen.",
    ),
    "nl": (
        "Ik kijk vooral in het weekend.",
        "Mijn partner en ik koken bijna elke avond mee.",
        "Mijn e-mailadres is {email}.",
        "Ik woon in {city}.",
        "Ik wilde {dish} maken voor mijn familie.",
        "Dit is de eerste keer dat ik de klantenservice mail.",
        "Ik typ dit op mijn telefoon, sorry voor de typfouten.",
        "Laat maar weten als jullie meer info nodig hebben.",
        "Mijn gebruikersnaam is {username}.",
        "Screenshot zit in de bijlage.",
        "Ik kook veel thuis.",
        "Een vriendin raadde EuroChef+ aan.",
    ),
}
NAMES: dict[str, tuple[str, ...]] = {
    "en": ("Sarah", "James O'Connor", "Emily Clarke", "Tom", "Priya Shah", "Mike", "Laura Bennett", "Daniel Hughes",
           "Chloe", "Aoife Byrne", "R. Patel"),
    "fr": ("Camille Dubois", "Julien", "Marie Lefèvre", "Nicolas Martin", "Sophie", "Thomas Bernard", "Chloé Petit",
           "Élodie", "Antoine Girard", "Amandine Roux", "M. Garnier"),
    "de": ("Jonas Müller", "Anna", "Lukas Schneider", "Katrin Weber", "Stefan", "Lea Fischer", "Tobias Wagner",
           "Sabine", "Felix Hoffmann", "Julia Schäfer", "M. Braun"),
    "nl": ("Sanne Jansen", "Pieter de Boer", "Lotte", "Daan Visser", "Emma Smit", "Bram", "Fleur Mertens",
           "Joris Peeters", "Anouk", "Thijs van Dijk", "K. Bakker"),
}
CONNECTORS: dict[str, tuple[str, ...]] = {
    # Connectors ending in a space lower-case the next fragment; German ones end with a colon (verb-second order).
    "en": ("Also, ", "And ", "Oh and ", "Plus, ", "Btw, ", "Also: "),
    "fr": ("Et ", "Aussi, ", "Autre chose : ", "Par ailleurs, ", "Sinon, ", "Et aussi, "),
    "de": ("Ach ja: ", "Noch was: ", "PS: ", "Übrigens: ", "Und noch etwas: "),
    "nl": ("En ", "Oh ja, ", "Nog iets: ", "Trouwens: ", "Ook: ", "En verder: "),
}
CODE_SWITCH: dict[str, dict[str, str]] = {
    # English tech words that creep into French, German and Dutch tickets (whole words only).
    "en": {},
    "fr": {"l'application": "l'app", "mot de passe": "password", "mise à jour": "update", "se connecter": "se logger",
           "téléchargements": "downloads", "écran noir": "black screen", "vidéo": "video", "supprimer": "delete"},
    "de": {"Konto": "Account", "Passwort": "Password", "Fehler": "Error", "Untertitel": "Subtitles",
           "Folge": "Episode", "Bildschirm": "Screen", "abgebucht": "gecharged", "gesperrt": "gelocked"},
    "nl": {"wachtwoord": "password", "foutmelding": "error", "ondertiteling": "subtitles", "geblokkeerd": "gelockt",
           "afleveringen": "episodes", "scherm": "screen", "verwijderen": "deleten", "abonnement": "subscription"},
}
EMOJI: dict[str, tuple[str, ...]] = {
    "frustrated": ("😡", "😤", "🙄", "😩", "😭"),
    "aggressive": ("🤬", "😡", "🖕"),
    "confused": ("🤔", "😕", "🤷"),
    "satisfied": ("👍", "🙏", "😊", "❤️", "🔥"),
    "urgent": ("🙏", "⏰", "‼️"),
    "none": ("🙏", "🙂"),
}

# ---------------------------------------------------------------------------------------------------------------
# Vocabularies for the slots.
# ---------------------------------------------------------------------------------------------------------------

VOCAB: dict[str, tuple[str, ...]] = {
    "dish": ("boeuf bourguignon", "stroopwafels", "Sauerbraten", "ratatouille", "risotto ai funghi", "pad thai",
             "coq au vin", "Käsespätzle", "bitterballen", "tarte tatin", "paella", "moussaka", "Apfelstrudel",
             "croque monsieur", "hutspot", "Schwarzwälder Kirschtorte", "crème brûlée", "shakshuka", "ramen",
             "bouillabaisse", "erwtensoep", "Flammkuchen", "gnocchi", "beef Wellington", "tiramisu", "carbonade",
             "Rinderrouladen", "quiche lorraine", "poffertjes", "vol-au-vent", "pasteis de nata", "pho"),
    "chef": ("Chef Amélie Laurent", "Jan de Vries", "Klaus Becker", "Sofia Rossi", "Pierre Moreau", "Lotte Bakker",
             "Hannah Schmidt", "Marco Bianchi", "Chef Yuki Tanaka", "Fatima El Amrani", "Oliver Grant", "Inès Durand",
             "Chef Henrik Larsen", "Anouk Peeters"),
    "show": ("Le Petit Bistro", "Knead to Know", "Brot & Butter", "Smaakmakers", "Pasta la Vista", "Sunday Roast Club",
             "Street Food Europa", "Bakken met Bram", "Masterclass Pâtisserie", "Hausmannskost mit Klaus",
             "Cuisine en 30 minutes", "Vegan Vibes", "The Spice Route", "Oma's Keuken", "Sofia's Sicilian Kitchen",
             "Zero Waste Kitchen", "Fire & Smoke BBQ"),
    "city": ("Lyon", "Amsterdam", "München", "Brussels", "Rotterdam", "Hamburg", "Manchester", "Dublin", "Antwerpen",
             "Genève", "Wien", "Utrecht", "Köln", "Marseille", "Gent", "Bordeaux", "Leipzig", "Eindhoven", "Leeds"),
    "org": ("Grand Hôtel Belvédère", "Brasserie Le Marais", "Kochschule Becker", "Hotelgroep Zeeland", "Bistro Verde",
            "Culinair College Antwerpen", "Alpenhof Hotels", "The Copper Pot Group", "Lycée hôtelier Saint-Clair",
            "Hotel Seeblick GmbH", "Restaurantgroep De Gouden Lepel", "Northern Catering Academy"),
    "promo": ("WELCOME20", "CHEF50", "SUMMER24", "KOCHEN10", "BONAPPETIT", "SMAKELIJK15", "XMAS-30"),
    "username": ("marie.l", "jdevries", "k.becker78", "sarah_cooks", "foodie_anna", "tom.h", "lucas.m", "sanne1990",
                 "chef_at_home", "p.janssens", "hungry_hans", "cuisine_de_lea"),
    "domain": ("gmail.com", "outlook.com", "hotmail.fr", "gmx.de", "web.de", "ziggo.nl", "telenet.be", "orange.fr",
               "yahoo.co.uk", "icloud.com"),
}
LANG_VOCAB: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "device": ("Samsung TV", "iPhone 14", "Android tablet", "Fire TV Stick", "Chromecast", "Roku", "LG TV (webOS)",
                   "Mac", "iPad", "laptop (Chrome)", "Pixel 7"),
        "errmsg": ("Something went wrong. Please try again later.", "This video is not available on this device",
                   "Unable to connect to server", "Playback error, please restart the app"),
        "cuisine": ("Italian", "Japanese", "Moroccan", "Lebanese", "Indian", "Thai", "Greek", "Mexican", "Korean",
                    "Scandinavian", "Portuguese"),
        "soon": ("in 1 hour", "in 30 minutes", "in two hours", "at 7 tonight", "in 45 min"),
        "months": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
                   "November", "December"),
    },
    "fr": {
        "device": ("iPhone 14", "téléviseur Samsung", "Mac", "iPad", "Chromecast", "Fire TV Stick", "PC (Chrome)",
                   "smartphone Android", "téléviseur LG", "Roku", "Pixel 7"),
        "errmsg": ("Une erreur est survenue. Veuillez réessayer plus tard.", "Cette vidéo n'est pas disponible",
                   "Impossible de se connecter au serveur", "Something went wrong"),
        "cuisine": ("italienne", "japonaise", "marocaine", "libanaise", "indienne", "thaïlandaise", "grecque",
                    "mexicaine", "coréenne", "bretonne", "alsacienne"),
        "soon": ("dans une heure", "dans 30 minutes", "dans deux heures", "ce soir à 19h", "dans 45 min"),
        "months": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
                   "novembre", "décembre"),
    },
    "de": {
        "device": ("Samsung-Fernseher", "iPhone 14", "Android-Tablet", "Fire TV Stick", "Chromecast", "Roku",
                   "LG-Fernseher (webOS)", "Mac", "iPad", "Laptop (Chrome)", "Pixel 7"),
        "errmsg": ("Es ist ein Fehler aufgetreten. Bitte versuche es später erneut.",
                   "Dieses Video ist auf diesem Gerät nicht verfügbar", "Keine Verbindung zum Server",
                   "Something went wrong"),
        "country": ("Italien", "Japan", "Marokko", "Indien", "Thailand", "Griechenland", "Mexiko", "Spanien",
                    "Vietnam", "Korea", "Portugal"),
        "soon": ("in einer Stunde", "in 30 Minuten", "in zwei Stunden", "heute um 19 Uhr", "in 45 Min."),
        "months": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
                   "November", "Dezember"),
    },
    "nl": {
        "device": ("Samsung tv", "iPhone 14", "Android-tablet", "Fire TV Stick", "Chromecast", "Roku", "LG tv",
                   "MacBook", "iPad", "laptop (Chrome)", "Pixel 7"),
        "errmsg": ("Er is iets misgegaan. Probeer het later opnieuw.", "Deze video is niet beschikbaar",
                   "Kan geen verbinding maken met de server", "Something went wrong"),
        "country": ("Italië", "Japan", "Marokko", "Indonesië", "Suriname", "Griekenland", "Mexico", "Spanje",
                    "Vietnam", "Korea", "Turkije"),
        "soon": ("over een uur", "over 30 minuten", "over twee uur", "vanavond om 19:00", "over 45 min"),
        "months": ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober",
                   "november", "december"),
    },
}
AMOUNTS = (25.98, 8.99, 59.90, 129.00, 19.99, 38.97, 6.50, 99.00, 149.90, 4.99, 24.99, 89.00)
PREMIUM_PRICE = 12.99


def _money(value: float, lang: str, rng: random.Random) -> str:
    whole = f"{value:.2f}"
    comma = whole.replace(".", ",")
    formats = {
        "en": (f"€{whole}", f"{whole} EUR", f"€ {whole}", f"{whole} euros"),
        "fr": (f"{comma} €", f"{comma}€", f"{comma} euros", f"{comma} EUR"),
        "de": (f"{comma} €", f"{comma} Euro", f"{comma} EUR", f"{comma}€"),
        "nl": (f"€ {comma}", f"€{comma}", f"{comma} euro", f"EUR {comma}"),
    }
    return rng.choice(formats[lang])


def _date(lang: str, rng: random.Random) -> str:
    day, month = rng.randint(1, 28), rng.randint(1, 12)
    name = LANG_VOCAB[lang]["months"][month - 1]
    formats = {
        "en": (f"{day} {name}", f"{name} {day}", f"{day:02d}/{month:02d}"),
        "fr": (f"{day} {name}", f"{day:02d}/{month:02d}"),
        "de": (f"{day}. {name}", f"{day:02d}.{month:02d}."),
        "nl": (f"{day} {name}", f"{day}-{month}"),
    }
    return rng.choice(formats[lang])


def _error_code(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return f"E-{rng.randint(1000, 9999)}"
    if kind == 1:
        return f"ERR_PLAYBACK_{rng.choice((500, 502, 503, 504))}"
    if kind == 2:
        return f"0x8007{rng.randint(0, 0xFFFF):04X}"
    if kind == 3:
        return f"DRM-{rng.randint(10, 99)}"
    if kind == 4:
        return rng.choice(("NET_TIMEOUT", "AUTH_401", "CDN-404", "PLAYER_INIT_FAILED"))
    return f"PLY-{rng.randint(100, 999)}"


SLOT_FUNCS: dict[str, Callable[[random.Random, str], str]] = {
    "amount": lambda rng, lang: _money(rng.choice(AMOUNTS), lang, rng),
    "premium_price": lambda rng, lang: _money(PREMIUM_PRICE, lang, rng),
    "date": lambda rng, lang: _date(lang, rng),
    "error": lambda rng, lang: _error_code(rng),
    "invoice": lambda rng, lang: rng.choice(("INV-{y}-{n}", "EC{n}{n}", "{y}/{n}")).format(
        y=rng.randint(2022, 2025), n=rng.randint(10000, 99999)),
    "order": lambda rng, lang: rng.choice(("#", "ORD-", "")) + str(rng.randint(100000, 999999)),
    "year": lambda rng, lang: str(rng.randint(2018, 2024)),
    "n": lambda rng, lang: str(rng.randint(2, 5)),
    "seats": lambda rng, lang: str(rng.choice((12, 15, 20, 25, 30, 40, 45, 60, 80, 120, 200))),
    "email": lambda rng, lang: f"{rng.choice(VOCAB['username'])}@{rng.choice(VOCAB['domain'])}",
}
_SLOT = re.compile(r"\{(\w+)\}")


def _fill(template: str, lang: str, rng: random.Random) -> str:
    """Fill every ``{slot}`` of a template, left to right, from the slot functions and vocabularies."""

    def one(match: re.Match[str]) -> str:
        slot = match.group(1)
        if slot in SLOT_FUNCS:
            return SLOT_FUNCS[slot](rng, lang)
        return rng.choice(LANG_VOCAB[lang].get(slot) or VOCAB[slot])

    return _SLOT.sub(one, template)


def _is_heldout(index: int) -> bool:
    return index % HELDOUT_EVERY == HELDOUT_EVERY - 1


def _pool(lang: str, label: str, heldout: bool) -> list[tuple[int, str]]:
    """The (index, template) pairs of one cue pool on one side of the seen / held-out split."""
    return [(i, t) for i, t in enumerate(CUE_TEMPLATES[lang][label]) if _is_heldout(i) == heldout]


def _template_ids(example: Example) -> list[str]:
    """The ``lang:label:index`` ids of the cue templates an example was built from (kept in memory only)."""
    return list(example.meta.get("templates", []))


# ---------------------------------------------------------------------------------------------------------------
# Label sampling: priors by primary topic, kept as data.
# ---------------------------------------------------------------------------------------------------------------

TOPIC_WEIGHTS = {"technical_issue": 0.33, "billing": 0.22, "account_access": 0.18, "content_request": 0.13,
                 "feature_request": 0.07, "cancellation": 0.07}
SECOND_TOPIC_P = 0.18
SECOND_TOPIC = {
    "technical_issue": {"account_access": 0.5, "billing": 0.3, "content_request": 0.1, "feature_request": 0.1},
    "billing": {"cancellation": 0.55, "account_access": 0.25, "technical_issue": 0.2},
    "account_access": {"technical_issue": 0.5, "billing": 0.4, "cancellation": 0.1},
    "content_request": {"feature_request": 0.5, "technical_issue": 0.3, "cancellation": 0.2},
    "feature_request": {"content_request": 0.6, "technical_issue": 0.4},
    "cancellation": {"billing": 0.7, "technical_issue": 0.15, "account_access": 0.15},
}
# Per primary topic: P(urgent), P(low_priority), P(frustrated), P(confused), P(satisfied), P(aggressive).
TOPIC_PRIORS = {
    "technical_issue": (0.25, 0.15, 0.38, 0.20, 0.09, 0.04),
    "billing": (0.25, 0.12, 0.35, 0.25, 0.07, 0.09),
    "account_access": (0.30, 0.08, 0.35, 0.25, 0.09, 0.04),
    "content_request": (0.03, 0.45, 0.12, 0.12, 0.35, 0.01),
    "feature_request": (0.02, 0.60, 0.06, 0.08, 0.45, 0.00),
    "cancellation": (0.15, 0.10, 0.45, 0.20, 0.05, 0.10),
}
MONEY_TOPICS = frozenset({"billing", "cancellation"})
USER_TYPE_PRIORS = {True: (0.40, 0.12, 0.08), False: (0.26, 0.30, 0.08)}  # keyed by "a money topic is present"


def _sample_labels(rng: random.Random) -> set[str]:
    """Sample a consistent label set: 1-2 topics, at most one urgency and user type, 0-2 emotions."""
    primary = rng.choices(list(TOPIC_WEIGHTS), weights=list(TOPIC_WEIGHTS.values()))[0]
    labels = {primary}
    if rng.random() < SECOND_TOPIC_P:
        options = SECOND_TOPIC[primary]
        labels.add(rng.choices(list(options), weights=list(options.values()))[0])
    p_urgent, p_low, p_frustrated, p_confused, p_satisfied, p_aggressive = TOPIC_PRIORS[primary]

    draw = rng.random()
    if draw < p_urgent:
        labels.add("urgent")
    elif draw < p_urgent + p_low:
        labels.add("low_priority")

    premium, free, enterprise = USER_TYPE_PRIORS[bool(labels & MONEY_TOPICS)]
    draw = rng.random()
    if draw < premium:
        labels.add("premium_user")
    elif draw < premium + free:
        labels.add("free_user")
    elif draw < premium + free + enterprise:
        labels.add("enterprise")

    if "low_priority" not in labels and rng.random() < p_aggressive:
        return labels | {"aggressive", "frustrated"}
    if "low_priority" in labels:
        p_frustrated *= 0.4
    emotions = ["frustrated"] if rng.random() < p_frustrated else []
    if rng.random() < p_confused:
        emotions.append("confused")
    if rng.random() < p_satisfied * (0.3 if "frustrated" in emotions else 1.0):
        emotions.append("satisfied")
    if len(emotions) > 2:
        emotions.remove(rng.choice(emotions))
    return labels | set(emotions)


# ---------------------------------------------------------------------------------------------------------------
# Assembly and noise.
# ---------------------------------------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W\d_]{4,}")
_SENTENCE_END = re.compile(r" ?[.!]+(?=\s|$)")
_KEEP_CASE = ("I", "I'm", "I've", "I'd", "I'll")


def _lower_first(text: str) -> str:
    first = text.split(" ", 1)[0]
    if first in _KEEP_CASE or any(c.isupper() for c in first[1:]):
        return text
    return text[:1].lower() + text[1:]


def _typos(text: str, rng: random.Random) -> str:
    """Swap, drop or double a letter in one to three words."""
    words = list(_WORD.finditer(text))
    if not words:
        return text
    chars = list(text)
    for match in sorted(rng.sample(words, min(len(words), rng.randint(1, 3))), key=lambda m: -m.start()):
        pos = rng.randrange(match.start() + 1, match.end() - 1)
        op = rng.randrange(3)
        if op == 0:
            chars[pos], chars[pos + 1] = chars[pos + 1], chars[pos]
        elif op == 1:
            del chars[pos]
        else:
            chars.insert(pos, chars[pos])
    return "".join(chars)


def _strip_accents(text: str, lang: str, rng: random.Random) -> str:
    if lang == "de" and rng.random() < 0.5:
        for umlaut, plain in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("Ä", "Ae"), ("Ö", "Oe"), ("Ü", "Ue")):
            text = text.replace(umlaut, plain)
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def _code_switch(text: str, lang: str, rng: random.Random) -> str:
    for native, english in CODE_SWITCH[lang].items():
        if native in text and rng.random() < 0.6:
            text = re.sub(rf"\b{re.escape(native)}\b", english, text)
    return text


def _fragments(
    labels: set[str], lang: str, rng: random.Random, heldout: bool
) -> tuple[list[str], list[str], list[str]]:
    """One filled cue fragment per label: (topic fragments, other fragments, template ids)."""
    topics: list[str] = []
    others: list[str] = []
    ids: list[str] = []
    for label in LABELS:
        if label not in labels or (label == "frustrated" and "aggressive" in labels and rng.random() < 0.6):
            continue
        index, template = rng.choice(_pool(lang, label, heldout))
        text = _fill(template, lang, rng)
        if (label == "aggressive" and rng.random() < 0.35) or (label == "urgent" and rng.random() < 0.2):
            text = text.upper()
        ids.append(f"{lang}:{label}:{index}")
        (topics if label in TOPICS else others).append(text)
    rng.shuffle(topics)
    rng.shuffle(others)
    return topics, others, ids


def _compose(labels: set[str], lang: str, rng: random.Random, heldout: bool) -> tuple[str, list[str]]:
    """Assemble a ticket text for a label set; return the text and its cue template ids."""
    topics, others, ids = _fragments(labels, lang, rng, heldout)
    style = rng.choices(("terse", "plain", "mail"), weights=(0.20, 0.50, 0.30))[0]
    body = topics + others
    if rng.random() < 0.25:  # topic usually leads, but not always
        rng.shuffle(body)
    if style != "terse":  # short cue phrasings mostly get a full stop inside longer messages
        body = [f"{part}." if part[-1].isalnum() and rng.random() < 0.6 else part for part in body]
    _decorate(body, labels, rng)
    if style == "terse":
        sep = rng.choice((" ", ". ", ", ", " - ", "\n"))
        text = sep.join(part.rstrip(".") if sep.strip() else part for part in body)
        if rng.random() < 0.5:
            text = text.lower()
    else:
        n_fillers = rng.choices((0, 1, 2), weights=(0.55, 0.30, 0.15))[0] + (style == "mail")
        for filler in rng.sample(FILLERS[lang], n_fillers):
            body.insert(rng.randint(0, len(body)), _fill(filler, lang, rng))
        for i in range(1, len(body)):
            if body[i][0].isalpha() and rng.random() < 0.12:
                connector = rng.choice(CONNECTORS[lang])
                body[i] = connector + (body[i] if connector.endswith(": ") else _lower_first(body[i]))
        text = _layout(body, lang, rng, style)
    return _add_noise(text, labels, lang, rng, style), ids


def _decorate(body: list[str], labels: set[str], rng: random.Random) -> None:
    """Attach shouted punctuation and emoji to body fragments (never after the signature)."""
    if labels & {"aggressive", "frustrated"} and rng.random() < 0.25:
        i = rng.randrange(len(body))
        body[i] = body[i].rstrip(".!?") + rng.choice(("!!", "!!!", "?!", "!!!!"))
    if rng.random() < 0.15:
        moods = [label for label in ("aggressive", "frustrated", "confused", "satisfied", "urgent") if label in labels]
        mood = moods[0] if moods else "none"
        emoji = rng.choice(EMOJI[mood]) * (1 if mood == "none" else rng.choice((1, 1, 2, 3)))
        i = rng.randrange(len(body)) if rng.random() < 0.4 else len(body) - 1
        body[i] = f"{body[i]} {emoji}"


def _layout(body: list[str], lang: str, rng: random.Random, style: str) -> str:
    greeting = rng.choice(GREETINGS[lang]) if rng.random() < (0.85 if style == "mail" else 0.45) else ""
    signoff = rng.choice(SIGNOFFS[lang]) if rng.random() < (0.8 if style == "mail" else 0.3) else ""
    name = rng.choice(NAMES[lang]) if signoff and rng.random() < 0.7 else ""
    if style == "mail":
        cut = rng.randint(1, len(body)) if len(body) > 2 else len(body)
        paragraphs = [" ".join(body[:cut]), " ".join(body[cut:])]
        parts = [greeting, "\n\n".join(p for p in paragraphs if p), "\n".join(s for s in (signoff, name) if s)]
        if rng.random() < 0.1:
            parts.append(rng.choice(SENT_FROM[lang]))
        return "\n\n".join(p for p in parts if p)
    closing = f"{signoff} {name}".strip() if signoff else ""
    text = " ".join(body)
    if greeting:
        text = greeting + rng.choice((" ", "\n", "\n\n")) + text
    return text + rng.choice((" ", "\n")) + closing if closing else text


def _add_noise(text: str, labels: set[str], lang: str, rng: random.Random, style: str) -> str:
    if lang != "en" and rng.random() < 0.15:
        text = _code_switch(text, lang, rng)
    if "aggressive" in labels and rng.random() < 0.12:
        text = text.upper()
    elif style != "terse" and rng.random() < 0.08:
        text = text.lower()
    if rng.random() < 0.10:
        text = _SENTENCE_END.sub("", text)
    if lang != "en" and rng.random() < 0.08:
        text = _strip_accents(text, lang, rng)
    if rng.random() < 0.10:
        text = _typos(text, rng)
    return text


# ---------------------------------------------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------------------------------------------


def _make_example(ex_id: str, rng: random.Random, heldout: bool, order: list[str]) -> Example:
    lang = rng.choices(list(LANGUAGE_WEIGHTS), weights=list(LANGUAGE_WEIGHTS.values()))[0]
    labels = _sample_labels(rng)
    text, ids = _compose(labels, lang, rng, heldout)
    return Example(
        id=ex_id,
        text=text,
        labels=tuple(name for name in order if name in labels),
        language=lang,
        meta={"templates": ids},
    )


def _check_taxonomy(taxonomy: Taxonomy) -> None:
    missing = [label for label in LABELS if label not in taxonomy.names]
    if missing:
        raise DataError(
            f"taxonomy {taxonomy.name!r} lacks label(s) {', '.join(missing)}; the generator writes the eurochef "
            "labels, so use load_taxonomy('eurochef') or a taxonomy that contains them"
        )


def _generate(n: int, seed: int, taxonomy: Taxonomy, progress: bool) -> dict[str, list[Example]]:
    if n < MIN_TICKETS:
        raise DataError(f"n must be at least {MIN_TICKETS} tickets so every split is non-empty, found {n}")
    _check_taxonomy(taxonomy)
    n_train, n_val = round(0.70 * n), round(0.15 * n)
    n_heldout = round(0.15 * n)
    rng = random.Random(seed)
    seen: list[Example] = []
    heldout: list[Example] = []
    with tqdm(total=n + n_heldout, desc="generating tickets", unit="ticket", disable=not progress) as bar:
        for i in range(n):
            seen.append(_make_example(f"eurochef-{i:06d}", rng, False, taxonomy.names))
            bar.update()
        for i in range(n_heldout):
            heldout.append(_make_example(f"eurochef-h-{i:06d}", rng, True, taxonomy.names))
            bar.update()
    return {
        "train": seen[:n_train],
        "validation": seen[n_train:n_train + n_val],
        "test": seen[n_train + n_val:],
        "test_heldout": heldout,
    }


def generate_splits(n: int, seed: int, taxonomy: Taxonomy | None = None) -> dict[str, list[Example]]:
    """Generate ``n`` tickets split 70/15/15 into train/validation/test, plus ``round(0.15*n)`` held-out tickets.

    train, validation and test use only the 'seen' cue templates; ``test_heldout`` uses only the held-out ones.
    Each example's ``meta['templates']`` lists its cue template ids (``lang:label:index``); it is not written to
    disk by :func:`write_generated_dataset`. The same ``seed`` always gives the same tickets.
    """
    return _generate(n, seed, taxonomy or load_taxonomy("eurochef"), progress=False)


def write_generated_dataset(out: str | Path, n: int, seed: int, progress: bool = True) -> dict[str, int]:
    """Generate a dataset folder: the four split JSONL files, ``taxonomy.json`` and ``dataset.json``.

    ``dataset.json`` records the seed, size, generator version and per-split counts of examples, languages and
    labels. Returns the number of examples per split.
    """
    out = Path(out)
    taxonomy = load_taxonomy("eurochef")
    splits = _generate(n, seed, taxonomy, progress)
    out.mkdir(parents=True, exist_ok=True)
    for name, examples in splits.items():
        write_jsonl(out / f"{name}.jsonl", [replace(ex, meta={}) for ex in examples])
    counts = {name: len(examples) for name, examples in splits.items()}
    info = {
        "generator": "models.generate",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "n": n,
        "taxonomy": taxonomy.name,
        "splits": counts,
        "languages": {
            name: dict(sorted(Counter(ex.language or "" for ex in examples).items()))
            for name, examples in splits.items()
        },
        "label_counts": {
            name: {label: sum(label in ex.labels for ex in examples) for label in taxonomy.names}
            for name, examples in splits.items()
        },
    }
    (out / "taxonomy.json").write_text(json.dumps(taxonomy.to_dict(), indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    (out / "dataset.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info("wrote %d generated tickets (seed %d) to %s: %s", sum(counts.values()), seed, out, counts)
    return counts
